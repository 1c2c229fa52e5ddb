"""Hostile inputs, one by one: every Pillow mode, the pixel cap, bad files, and errors from workers.

The fuzz tests (test_fuzz_loaders.py) sample these at random; here each case is fixed, so a
regression names the exact input.
"""

from __future__ import annotations

import os
import pickle
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFile
from torch.utils.data import DataLoader

from defectscope.data import (
    MAX_IMAGE_PIXELS,
    AnomalyDataset,
    DataConfig,
    DataError,
    Record,
    check_image_pixels,
    load_image,
    load_mask,
)
from defectscope.data.image_io import _image_array, _mask_array

# --------------------------------------------------------------------------- every mode

# modes a TIFF can hold, so they are read back from a real file
TIFF_MODES = ["1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr", "LAB", "I", "I;16", "I;16B", "F"]
# modes no writer we read produces; decoded from memory through the same conversion code
MEMORY_MODES = ["HSV", "RGBX", "RGBa", "I;16L", "I;16N"]

# (mode, pixel of the "brightest" colour in that mode): must read as white and as defect
WHITE = {
    "1": 1, "L": 255, "LA": (255, 0), "P": 1, "PA": (1, 0), "RGB": (255,) * 3, "RGBA": (255, 255, 255, 0),
    "CMYK": (0, 0, 0, 0), "YCbCr": (255, 128, 128), "LAB": (255, 128, 128), "I": 65535, "I;16": 65535,
    "I;16B": 65535, "F": 1.0, "HSV": (0, 0, 255), "RGBX": (255, 255, 255, 0), "RGBa": (255, 255, 255, 255),
    "I;16L": 65535, "I;16N": 65535,
}
# the darkest colour: reads as black, not defect
BLACK = {
    "1": 0, "L": 0, "LA": (0, 255), "P": 0, "PA": (0, 255), "RGB": (0,) * 3, "RGBA": (0, 0, 0, 255),
    "CMYK": (0, 0, 0, 255), "YCbCr": (0, 128, 128), "LAB": (0, 128, 128), "I": 0, "I;16": 0,
    "I;16B": 0, "F": 0.0, "HSV": (0, 0, 0), "RGBX": (0, 0, 0, 0), "RGBa": (0, 0, 0, 255),
    "I;16L": 0, "I;16N": 0,
}


def two_pixel_image(mode: str) -> Image.Image:
    """A 2 x 1 image: black on the left, white on the right."""
    image = Image.new(mode, (2, 1))
    if mode in ("P", "PA"):
        image.putpalette([0, 0, 0, 255, 255, 255] + [0] * (254 * 3))
    image.putpixel((0, 0), BLACK[mode])
    image.putpixel((1, 0), WHITE[mode])
    return image


def decoded(mode: str, tmp_path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(image, mask) tensors of the two-pixel image, through a TIFF file where a TIFF can hold the mode."""
    image = two_pixel_image(mode)
    if mode in TIFF_MODES:
        path = tmp_path / "two.tif"
        image.save(path)
        with Image.open(path) as stored:
            assert stored.mode == mode  # otherwise this test checks another mode than it says
        return load_image(path), load_mask(path)
    path = tmp_path / "memory.tif"
    arr = torch.from_numpy(_image_array(image, path))
    arr = arr.unsqueeze(0) if arr.ndim == 2 else arr.permute(2, 0, 1)  # as load_image lays it out
    return arr, torch.from_numpy(_mask_array(image, path))


@pytest.mark.parametrize("mode", TIFF_MODES + MEMORY_MODES)
def test_every_mode_reads_black_as_0_and_white_as_1(tmp_path: Path, mode: str) -> None:
    image, mask = decoded(mode, tmp_path)
    assert image.dtype == torch.float32
    image = image.reshape(image.shape[0], 2)  # (channels, pixel)
    # LAB and YCbCr go through a colour transform: 8-bit rounding, not exact 0 and 1
    torch.testing.assert_close(image[:, 0], torch.zeros(image.shape[0]), atol=2 / 255, rtol=0)
    torch.testing.assert_close(image[:, 1], torch.ones(image.shape[0]), atol=2 / 255, rtol=0)
    assert mask.reshape(-1).tolist() == [False, True]


def test_lab_mask_from_a_tiff_is_read_not_a_traceback(tmp_path: Path) -> None:
    """The reported case: a LAB TIFF as a mask; its light half is the defect."""
    lab = np.zeros((4, 6, 3), np.uint8)  # raw CIELab bytes: a*, b* signed, so 0 is neutral grey
    lab[:, 3:, 0] = 255  # right half: L* = 100 (white)
    path = tmp_path / "lab_mask.tif"
    Image.frombytes("LAB", (6, 4), lab.tobytes()).save(path)
    mask = load_mask(path)
    assert mask.shape == (1, 4, 6)
    assert mask[0, :, :3].sum() == 0 and bool(mask[0, :, 3:].all())


def test_a_mode_pillow_cannot_convert_is_refused_naming_file_and_mode(tmp_path: Path) -> None:
    path = tmp_path / "premultiplied.tif"
    image = Image.new("La", (2, 2))
    for convert in (_image_array, _mask_array):
        with pytest.raises(DataError, match="mode 'La'") as info:
            convert(image, path)
        assert str(path) in str(info.value)


@pytest.mark.parametrize("loader", [load_image, load_mask])
def test_nan_in_a_float_file_is_refused(tmp_path: Path, loader) -> None:
    path = tmp_path / "nan.tif"
    Image.fromarray(np.array([[0.5, np.inf]], np.float32), "F").save(path)
    with pytest.raises(DataError, match="NaN or infinite") as info:
        loader(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- pixel cap


def png_header_only(path: Path, width: int, height: int) -> Path:
    """A PNG that declares width x height (8-bit RGB) but carries almost no data: tiny on disk."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunks = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunks)
    return path


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Makes any pixel decoding fail the test; returns the list of files that were decoded."""
    decoded: list[str] = []

    def load(self: ImageFile.ImageFile):  # noqa: ANN202 - Pillow's signature
        decoded.append(str(self.filename))
        raise AssertionError(f"{self.filename} was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    return decoded


@pytest.mark.parametrize("loader", [load_image, load_mask])
def test_huge_declared_size_is_refused_from_the_header(tmp_path: Path, loader, no_decoding: list[str]) -> None:
    path = png_header_only(tmp_path / "huge.png", 10_000, 10_000)
    assert path.stat().st_size < 100
    with pytest.raises(DataError) as info:
        loader(path)
    message = str(info.value)
    assert str(path) in message and "10000x10000" in message and "data.max_image_pixels" in message
    assert no_decoding == []


def test_beyond_pillows_own_limit_is_a_data_error_too(tmp_path: Path) -> None:
    path = png_header_only(tmp_path / "bomb.png", 60_000, 60_000)  # 3.6 G pixels: Pillow refuses to open it
    with pytest.raises(DataError, match="data.max_image_pixels") as info:
        load_image(path, max_pixels=None)
    assert str(path) in str(info.value)


def test_default_cap_admits_a_4000_by_4000_camera_image(tmp_path: Path) -> None:
    assert DataConfig().max_image_pixels == MAX_IMAGE_PIXELS >= 4000 * 4000
    assert check_image_pixels(png_header_only(tmp_path / "camera.png", 4000, 4000)) == (4000, 4000)


def test_cap_is_inclusive_and_settable(tmp_path: Path) -> None:
    path = tmp_path / "small.png"
    Image.new("L", (6, 5)).save(path)
    assert check_image_pixels(path, 30) == (6, 5)
    assert load_image(path, max_pixels=30).shape == (3, 5, 6)
    with pytest.raises(DataError, match=r"6x5 = 30 pixels exceeds data.max_image_pixels = 29"):
        load_mask(path, max_pixels=29)
    with pytest.raises(DataError, match="must be a positive integer"):
        check_image_pixels(path, 0)


def test_dataset_passes_the_cap_from_the_config(tmp_path: Path) -> None:
    path = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(path)
    record = Record(path, None, 0, "c", "good")
    with pytest.raises(DataError, match=f"{path}: image of 8x8 = 64 pixels exceeds data.max_image_pixels = 63"):
        AnomalyDataset([record], image_size=4, cache=True, max_image_pixels=63)
    assert len(AnomalyDataset([record], image_size=4, cache=True, max_image_pixels=64)) == 1


# --------------------------------------------------------------------------- bad files


def write_png(path: Path) -> Path:
    Image.new("RGB", (4, 4), (10, 20, 30)).save(path, format="PNG")
    return path


@pytest.mark.parametrize("loader", [load_image, load_mask])
def test_content_that_is_not_its_suffix_is_refused(tmp_path: Path, loader) -> None:
    jpeg = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(jpeg, format="JPEG")
    with pytest.raises(DataError, match="holds JPEG data but its suffix '.png' says PNG") as info:
        loader(jpeg)
    assert str(jpeg) in str(info.value)


@pytest.mark.parametrize("loader", [load_image, load_mask])
def test_unsupported_formats_are_refused_without_opening_them(tmp_path: Path, loader) -> None:
    # a GIF and an EPS (which Pillow would hand to Ghostscript) under an image suffix, and under their own
    gif = tmp_path / "anim.png"
    Image.new("P", (4, 4)).save(gif, format="GIF")
    eps = tmp_path / "vector.tif"
    eps.write_bytes(b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 4 4\nshowpage\n")
    own = tmp_path / "anim.gif"
    own.write_bytes(gif.read_bytes())
    for path in (gif, eps, own):
        with pytest.raises(DataError, match="not a PNG, JPEG, BMP or TIFF file") as info:
            loader(path)
        assert str(path) in str(info.value)


def test_a_file_without_a_known_suffix_is_read_by_content(tmp_path: Path) -> None:
    path = write_png(tmp_path / "upload")
    assert load_image(path).shape == (3, 4, 4)


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="POSIX permissions")
def test_unreadable_file(tmp_path: Path) -> None:
    path = write_png(tmp_path / "locked.png")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: fall back to Pillow failing the same way
            pytest.skip("running as a user who can read a mode-000 file (root)")
        with pytest.raises(DataError, match="permission denied") as info:
            load_image(path)
        assert str(path) in str(info.value)
    finally:
        path.chmod(0o644)


def test_permission_error_from_pillow_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_png(tmp_path / "locked.png")

    def refuse(*args: object, **kwargs: object) -> Image.Image:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Image, "open", refuse)
    with pytest.raises(DataError, match="permission denied") as info:
        load_mask(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("loader", [load_image, load_mask])
@pytest.mark.parametrize("cut", [8, 33, 60])  # inside the signature, after IHDR, inside IDAT
def test_truncated_png_at_any_point(tmp_path: Path, loader, cut: int) -> None:
    path = tmp_path / "cut.png"
    rng = np.random.default_rng(cut)
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(path)
    path.write_bytes(path.read_bytes()[:cut])
    with pytest.raises(DataError) as info:
        loader(path)
    assert str(path) in str(info.value)


# --------------------------------------------------------------------------- errors from workers


def test_data_error_survives_pickling() -> None:
    error = DataError("/x.png: image data is truncated or corrupt")
    error.where = "in DataLoader worker process 3"
    again = pickle.loads(pickle.dumps(error))
    assert type(again) is DataError and str(again) == str(error) and again.where == error.where


def test_a_worker_data_error_reaches_the_user_as_its_plain_message(tmp_path: Path) -> None:
    good = write_png(tmp_path / "good.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(good.read_bytes()[:40])
    records = [Record(p, None, 0, "c", "good") for p in (good, bad)]
    dataset = AnomalyDataset(records, image_size=4, cache=False)  # files are decoded in the worker
    with pytest.raises(DataError) as in_process:
        dataset[1]
    loader = DataLoader(dataset, batch_size=2, num_workers=1)
    with pytest.raises(DataError) as from_worker:
        next(iter(loader))
    assert str(from_worker.value) == str(in_process.value)
    assert str(from_worker.value).startswith(f"{bad}: ")
    assert "Traceback" not in str(from_worker.value)
    assert from_worker.value.where == "in DataLoader worker process 0"


def test_a_multiline_message_is_kept_whole() -> None:
    # what torch's ExceptionWrapper.reraise passes: the worker's formatted traceback
    original = "/a.png: first problem\n  /b.png: second problem"
    wrapped = (
        "Caught DataError in DataLoader worker process 1.\nOriginal Traceback (most recent call last):\n"
        '  File "x.py", line 1, in f\n    raise DataError(msg)\n'
        f"defectscope.data.errors.DataError: {original}\n"
    )
    error = DataError(wrapped)
    assert str(error) == original and error.where == "in DataLoader worker process 1"
    assert str(DataError("Caught nothing: a plain message")) == "Caught nothing: a plain message"
