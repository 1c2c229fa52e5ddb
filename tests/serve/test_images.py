"""Upload decoding: the same pixels as load_image, the pixel cap read from the header, the overlay's size."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("python_multipart")

from defectscope.data.image_io import load_image  # noqa: E402
from defectscope.serve.images import check_content_type, decode_upload, overlay_bytes, probe_upload  # noqa: E402
from defectscope.serve.upload import UploadError  # noqa: E402


def encoded(image: Image.Image, fmt: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims width×height but carries almost no data: decoding it would fail, the header does not."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


rng = np.random.default_rng(0)
IMAGES = {
    "rgb": Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)),
    "grey": Image.fromarray(rng.integers(0, 256, (20, 30), dtype=np.uint8)),
    "grey16": Image.fromarray(rng.integers(0, 65536, (20, 30), dtype=np.uint16)),
    "rgba": Image.fromarray(rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)),
    "palette": Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).convert("P"),
}


@pytest.mark.parametrize("kind", sorted(IMAGES))
def test_decoding_matches_load_image(kind, tmp_path):
    path = tmp_path / f"{kind}.png"
    IMAGES[kind].save(path)
    got = decode_upload(path.read_bytes(), "upload", 10**6)
    np.testing.assert_array_equal(got, load_image(path).permute(1, 2, 0).numpy())
    assert got.shape == (20, 30, 3) and got.dtype == np.float32


def test_the_pixel_cap_is_checked_from_the_header_before_decoding():
    bomb = png_header_only(100_000, 100_000)  # 10 Gpx claimed in ~100 bytes
    assert probe_upload(png_header_only(100, 100), "ok", 10**6) == (100, 100)
    for check in (probe_upload, decode_upload):
        with pytest.raises(UploadError) as err:
            check(bomb, "bomb.png", 4096 * 4096)
        assert err.value.status == 413 and "--max-image-pixels 16777216" in err.value.message
    # under the cap the same kind of file gets as far as decoding, which fails on the missing data
    with pytest.raises(UploadError) as err:
        decode_upload(png_header_only(3000, 3000), "short.png", 4096 * 4096)
    assert err.value.status == 422


def test_a_real_compressed_bomb_is_refused_and_a_4000_square_image_is_admitted():
    bomb = encoded(Image.new("L", (5000, 5000)))  # 25 Mpx of zeros in ~25 kB
    assert len(bomb) < 100_000
    with pytest.raises(UploadError) as err:
        probe_upload(bomb, "bomb.png", 4096 * 4096)
    assert err.value.status == 413 and "5000x5000" in err.value.message  # our cap, below Pillow's own
    assert probe_upload(encoded(Image.new("L", (4000, 4000))), "big.png", 4096 * 4096) == (4000, 4000)


@pytest.mark.parametrize(("data", "status"), [
    (b"", 400), (b"hello, not an image", 422), (encoded(IMAGES["rgb"])[:200], 422),
    (encoded(IMAGES["rgb"], "ICO"), 422),  # Pillow reads ICO, the service does not accept it
])
def test_bad_bytes(data, status):
    with pytest.raises(UploadError) as err:
        decode_upload(data, "x", 10**6)
    assert err.value.status == status and err.value.message.startswith("x: ")


def test_content_types():
    for ok in ("image/png", "image/jpeg", "application/octet-stream", ""):
        check_content_type("f", ok)
    for bad in ("text/plain", "application/json", "video/mp4"):
        with pytest.raises(UploadError) as err:
            check_content_type("f", bad)
        assert err.value.status == 415


def test_the_overlay_keeps_the_aspect_and_fits_the_longest_side():
    image = np.zeros((300, 1200, 3), np.float32)
    amap = np.zeros((300, 1200), np.float32)
    amap[:, 600:] = 1.0
    small = Image.open(io.BytesIO(overlay_bytes(image, amap, high=1.0, max_side=400)))
    assert small.size == (400, 100)
    pixels = np.asarray(small.convert("RGB")).astype(int)
    assert pixels[50, 350, 0] > 100 and pixels[50, 50, 2] > pixels[50, 50, 0]  # red where the map is high, blue low
    assert Image.open(io.BytesIO(overlay_bytes(image[:50, :60], amap[:50, :60], 1.0, 400))).size == (60, 50)


def test_the_overlay_colours_run_from_the_maps_median_to_the_threshold():
    """A map far from 0 (Mahalanobis distances) still spans blue to red; only the threshold is red."""
    amap = np.full((10, 40), 40.0, np.float32)
    amap[:, 32:] = 49.0  # at the threshold (the median, 40, is the normal background)
    amap[:, 24:32] = 44.5  # half way
    pixels = np.asarray(Image.open(io.BytesIO(overlay_bytes(np.zeros((10, 40, 3)), amap, 49.0, 100))).convert("RGB"))
    blue, mid, red = pixels[5, 5].astype(int), pixels[5, 25].astype(int), pixels[5, 35].astype(int)
    assert blue[2] > blue[0] and red[0] > 100 and red[2] < 20 and mid[1] > mid[2]


def test_the_jpeg_overlay_is_the_png_picture_within_jpeg_rounding():
    rows, cols = np.mgrid[0:120, 0:90]
    image = np.stack([rows / 120, cols / 90, np.full((120, 90), 0.5)], axis=-1).astype(np.float32)  # a lit surface
    amap = np.zeros((120, 90), np.float32)
    amap[40:80, 30:60] = 1.0
    png = Image.open(io.BytesIO(overlay_bytes(image, amap, 1.0, 400, "png")))
    jpeg = Image.open(io.BytesIO(overlay_bytes(image, amap, 1.0, 400, "jpeg")))
    assert (png.format, jpeg.format) == ("PNG", "JPEG") and png.size == jpeg.size == (90, 120)
    difference = np.abs(np.asarray(png.convert("RGB"), int) - np.asarray(jpeg.convert("RGB"), int))
    assert difference.mean() < 3 and np.percentile(difference, 99) < 20  # the red block's edges ring a little
    assert np.asarray(jpeg.convert("RGB"), int)[60, 45, 0] > 100
