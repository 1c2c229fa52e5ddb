"""Fuzzing the image and mask loaders: every input decodes correctly or raises DataError naming the file.

Inputs: random bytes (bare, or behind a PNG/JPEG/BMP/TIFF signature), valid files written by
Pillow in every mode each format can hold, the same files truncated, with bytes flipped,
overwritten, inserted or deleted, saved under another format's suffix, and PNGs whose header
declares any size up to 2^31 - 1 per side. Allowed outcomes: a finite float32 ``(3, H, W)`` image
in [0, 1] or a ``(1, H, W)`` mask in {0, 1}, with H x W as the header says, or a DataError that
names the file, within the profile's deadline (tests/conftest.py). ``--fuzz`` runs 10,000
examples per test; ``--fuzz-log`` records each outcome.
"""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from PIL import Image

from defectscope.data import MAX_IMAGE_PIXELS, DataError, image_size, load_image, load_mask
from helpers.fuzzlog import Outcome

pytestmark = pytest.mark.fuzz

SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "BMP": ".bmp", "TIFF": ".tif"}
# the modes each format's Pillow writer accepts (RGBX, YCbCr, CMYK in JPEG come back as RGB/CMYK)
MODES = {
    "PNG": ["1", "L", "LA", "P", "RGB", "RGBA", "I;16"],
    "JPEG": ["L", "RGB", "CMYK", "YCbCr", "RGBX"],
    "BMP": ["1", "L", "P", "RGB", "RGBA"],
    "TIFF": ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "I;16", "I;16B", "F"],
}
SIGNATURES = [b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"BM", b"II*\x00", b"MM\x00*"]
LOADERS: dict[str, Callable[[Path], torch.Tensor]] = {"load_image": load_image, "load_mask": load_mask}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def check_result(loader: str, tensor: torch.Tensor, path: Path) -> None:
    """The success contract: shape from the header, float32, finite, in range."""
    width, height = image_size(path)
    channels = 3 if loader == "load_image" else 1
    assert tensor.shape == (channels, height, width)
    assert tensor.dtype == torch.float32
    assert bool(torch.isfinite(tensor).all())
    if loader == "load_image":
        assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0
    else:
        assert set(torch.unique(tensor).tolist()) <= {0.0, 1.0}


def run_loader(loader: str, kind: str, data: bytes, path: Path, fmt: str = "") -> None:
    path.write_bytes(data)
    with Outcome(loader, kind, (DataError,), names=path, detail=fmt):
        check_result(loader, LOADERS[loader](path), path)


# --------------------------------------------------------------------------- strategies


@st.composite
def encoded(draw: st.DrawFn) -> tuple[str, str, bytes]:
    """(format, mode, bytes) of a small valid file with random pixels."""
    fmt = draw(st.sampled_from(sorted(MODES)))
    mode = draw(st.sampled_from(MODES[fmt]))
    width, height = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    nbytes = len(Image.new(mode, (width, height)).tobytes())
    pixels = draw(st.binary(min_size=nbytes, max_size=nbytes))
    image = Image.frombytes(mode, (width, height), pixels)
    if mode in ("P", "PA"):
        image.putpalette(draw(st.binary(min_size=768, max_size=768)))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return fmt, mode, buffer.getvalue()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    """(how, bytes): ``data`` cut, with bytes flipped, overwritten, inserted or deleted."""
    how = draw(st.sampled_from(["truncate", "flip", "overwrite", "insert", "delete"]))
    n = len(data)
    if how == "truncate":
        return how, data[: draw(st.integers(0, n - 1))]
    if how == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 8))):
            out[draw(st.integers(0, n - 1))] ^= draw(st.integers(1, 255))
        return how, bytes(out)
    start = draw(st.integers(0, n - 1))
    if how == "overwrite":
        junk = draw(st.binary(min_size=1, max_size=64))
        return how, data[:start] + junk + data[start + len(junk) :]
    if how == "insert":
        return how, data[:start] + draw(st.binary(min_size=1, max_size=64)) + data[start:]
    return how, data[:start] + data[start + draw(st.integers(1, 64)) :]


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


# (bit depth, colour type) pairs the PNG standard allows
PNG_TYPES = [(1, 0), (8, 0), (16, 0), (8, 2), (16, 2), (8, 3), (8, 4), (8, 6), (16, 6)]


def png_declaring(width: int, height: int, depth: int, colour: int, pixels: bytes) -> tuple[int, int, bytes]:
    """(width, height, bytes) of a PNG whose header says width x height, with ``pixels`` as its image data."""
    header = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    palette = png_chunk(b"PLTE", bytes(range(256)) * 3) if colour == 3 else b""
    chunks = header + palette + png_chunk(b"IDAT", zlib.compress(pixels)) + png_chunk(b"IEND", b"")
    return width, height, b"\x89PNG\r\n\x1a\n" + chunks


@st.composite
def png_with_size(draw: st.DrawFn) -> tuple[int, int, bytes]:
    """A PNG whose header declares any size, followed by a short (usually too short) image stream."""
    side = st.one_of(st.integers(1, 64), st.integers(1, 20_000), st.integers(1, 2**31 - 1))
    depth, colour = draw(st.sampled_from(PNG_TYPES))
    pixels = draw(st.binary(max_size=256)) + bytes(draw(st.integers(0, 4096)))
    return png_declaring(draw(side), draw(side), depth, colour, pixels)


# --------------------------------------------------------------------------- properties


@pytest.mark.parametrize("loader", sorted(LOADERS))
@given(
    prefix=st.sampled_from(SIGNATURES), tail=st.binary(max_size=512), suffix=st.sampled_from(sorted(SUFFIX.values()))
)
def test_random_bytes(workdir: Path, loader: str, prefix: bytes, tail: bytes, suffix: str) -> None:
    kind = "random bytes" if not prefix else "format signature + random bytes"
    run_loader(loader, kind, prefix + tail, workdir / f"random{suffix}", suffix)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@given(sample=encoded())
def test_valid_files_of_every_mode(workdir: Path, loader: str, sample: tuple[str, str, bytes]) -> None:
    fmt, mode, data = sample
    path = workdir / f"valid{SUFFIX[fmt]}"
    run_loader(loader, "valid file", data, path, f"{fmt} {mode}")
    # an intact file must decode; the only refusal allowed is NaN/infinity in a float TIFF
    with Image.open(path) as image:
        holds_nan = image.mode == "F" and not np.isfinite(np.asarray(image)).all()
    if not holds_nan:
        LOADERS[loader](path)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@given(data=st.data(), sample=encoded())
def test_mutated_files(workdir: Path, loader: str, data: st.DataObject, sample: tuple[str, str, bytes]) -> None:
    fmt, mode, original = sample
    how, damaged = data.draw(mutated(original))
    run_loader(loader, f"{how} valid file", damaged, workdir / f"mutated{SUFFIX[fmt]}", f"{fmt} {mode}")


@pytest.mark.parametrize("loader", sorted(LOADERS))
@given(sample=encoded(), suffix=st.sampled_from(sorted(SUFFIX.values())))
def test_other_suffix(workdir: Path, loader: str, sample: tuple[str, str, bytes], suffix: str) -> None:
    fmt, _, data = sample
    path = workdir / f"renamed{suffix}"
    renamed = "valid file, own suffix" if suffix == SUFFIX[fmt] else "valid file, other format's suffix"
    run_loader(loader, renamed, data, path, f"{fmt} as {suffix}")
    if suffix != SUFFIX[fmt]:
        with pytest.raises(DataError, match="suffix"):
            LOADERS[loader](path)


@pytest.mark.parametrize("loader", sorted(LOADERS))
@given(sample=png_with_size())
@example(sample=png_declaring(10_000, 10_000, 8, 2, b""))  # the reported 2 GB case
@example(sample=png_declaring(60_000, 60_000, 8, 6, b""))  # beyond Pillow's own limit
@example(sample=png_declaring(4, 3, 16, 6, bytes(3 * (1 + 4 * 8))))  # complete 16-bit RGBA
def test_declared_sizes(workdir: Path, loader: str, sample: tuple[int, int, bytes]) -> None:
    width, height, data = sample
    path = workdir / "sized.png"
    too_large = width * height > MAX_IMAGE_PIXELS
    kind = "PNG declaring more pixels than the cap" if too_large else "PNG declaring up to the cap"
    run_loader(loader, kind, data, path, f"{width}x{height}")
    if too_large:
        with pytest.raises(DataError, match="max_image_pixels"):
            LOADERS[loader](path)
