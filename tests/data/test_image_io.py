"""Decoding every supported image mode, mask thresholds, and errors that name the file."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from defectscope.data import DataError, image_size, load_image, load_mask
from defectscope.data.image_io import image_tensor, load_image_array, rgb_array

GREY = np.array([[0, 1, 127], [128, 200, 255]], dtype=np.uint8)  # (H=2, W=3)


def save(tmp_path: Path, name: str, image: Image.Image, **params) -> Path:
    path = tmp_path / name
    image.save(path, **params)
    return path


def check_image(tensor: torch.Tensor, height: int, width: int) -> None:
    assert tensor.shape == (3, height, width)
    assert tensor.dtype == torch.float32
    assert tensor.is_contiguous()
    assert float(tensor.min()) >= 0.0 and float(tensor.max()) <= 1.0


# --------------------------------------------------------------------------- load_image


@pytest.mark.parametrize("suffix", [".png", ".bmp", ".tif"])
def test_grey_l_is_replicated_to_three_channels(tmp_path: Path, suffix: str) -> None:
    tensor = load_image(save(tmp_path, f"grey{suffix}", Image.fromarray(GREY, "L")))
    check_image(tensor, 2, 3)
    expected = torch.from_numpy(GREY.astype(np.float32) / 255.0)
    for channel in tensor:
        torch.testing.assert_close(channel, expected)


def test_grey_jpeg(tmp_path: Path) -> None:
    arr = np.full((8, 12), 100, dtype=np.uint8)
    tensor = load_image(save(tmp_path, "grey.jpg", Image.fromarray(arr, "L"), quality=95))
    check_image(tensor, 8, 12)
    assert torch.allclose(tensor, torch.full_like(tensor, 100 / 255), atol=2 / 255)


def test_la_drops_alpha(tmp_path: Path) -> None:
    arr = np.stack([GREY, np.zeros_like(GREY)], axis=-1)  # fully transparent
    tensor = load_image(save(tmp_path, "la.png", Image.fromarray(arr, "LA")))
    check_image(tensor, 2, 3)
    torch.testing.assert_close(tensor[0], torch.from_numpy(GREY / np.float32(255.0)))


def test_rgb_exact(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3) * 14
    tensor = load_image(save(tmp_path, "rgb.png", Image.fromarray(arr, "RGB")))
    check_image(tensor, 2, 3)
    torch.testing.assert_close(tensor, torch.from_numpy(arr).permute(2, 0, 1) / 255.0)


def test_rgba_drops_alpha_without_compositing(tmp_path: Path) -> None:
    rgb = np.array([[[10, 20, 30], [200, 100, 50]]], dtype=np.uint8)
    alpha = np.array([[[0], [128]]], dtype=np.uint8)
    image = Image.fromarray(np.concatenate([rgb, alpha], axis=-1), "RGBA")
    tensor = load_image(save(tmp_path, "rgba.png", image))
    check_image(tensor, 1, 2)
    torch.testing.assert_close(tensor, torch.from_numpy(rgb).permute(2, 0, 1) / 255.0)


def test_palette_is_looked_up(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    image.putdata([1, 0])
    tensor = load_image(save(tmp_path, "p.png", image))
    check_image(tensor, 1, 2)
    torch.testing.assert_close(tensor[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))
    torch.testing.assert_close(tensor[:, 0, 1], torch.tensor([1.0, 0.0, 0.0]))


def test_palette_with_transparency_does_not_warn(tmp_path: Path) -> None:
    image = Image.new("P", (2, 1))
    image.putpalette([0, 255, 0, 9, 9, 9] + [0] * (254 * 3))
    image.putdata([0, 1])
    path = save(tmp_path, "pt.png", image, transparency=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tensor = load_image(path)
    torch.testing.assert_close(tensor[:, 0, 0], torch.tensor([0.0, 1.0, 0.0]))


def test_one_bit(tmp_path: Path) -> None:
    image = Image.fromarray(GREY, "L").convert("1")  # dithers; compare with what PIL stored
    path = save(tmp_path, "bits.png", image)
    with Image.open(path) as stored:
        expected = torch.from_numpy(np.asarray(stored).astype(np.float32))
    tensor = load_image(path)
    check_image(tensor, 2, 3)
    assert set(tensor.unique().tolist()) <= {0.0, 1.0}
    torch.testing.assert_close(tensor[0], expected)


def test_sixteen_bit_keeps_values_above_255_proportional(tmp_path: Path) -> None:
    arr = np.array([[0, 255, 300], [1000, 32768, 65535]], dtype=np.uint16)
    image = Image.fromarray(arr)
    assert image.mode == "I;16"
    path = save(tmp_path, "deep.png", image)
    with Image.open(path) as stored:
        assert stored.mode.startswith("I;16")
    tensor = load_image(path)
    check_image(tensor, 2, 3)
    expected = torch.from_numpy(arr.astype(np.float32) / 65535.0)
    torch.testing.assert_close(tensor[0], expected)
    torch.testing.assert_close(tensor[2], expected)
    # not clipped at 255: 1000 is (1000 / 300) times brighter than 300
    assert float(tensor[0, 1, 0] / tensor[0, 0, 2]) == pytest.approx(1000 / 300, rel=1e-5)
    assert float(tensor[0, 1, 2]) == 1.0


def test_int32_mode_scaled_as_sixteen_bit_and_clipped(tmp_path: Path) -> None:
    arr = np.array([[-5, 300, 65535, 70000]], dtype=np.int32)
    image = Image.fromarray(arr)
    assert image.mode == "I"
    tensor = load_image(save(tmp_path, "int.tif", image))
    check_image(tensor, 1, 4)
    torch.testing.assert_close(tensor[0, 0], torch.tensor([0.0, 300 / 65535, 1.0, 1.0]))


def test_float_mode_taken_as_unit_range_and_clipped(tmp_path: Path) -> None:
    arr = np.array([[-0.5, 0.25, 0.75, 3.0]], dtype=np.float32)
    tensor = load_image(save(tmp_path, "float.tif", Image.fromarray(arr, "F")))
    check_image(tensor, 1, 4)
    torch.testing.assert_close(tensor[1, 0], torch.tensor([0.0, 0.25, 0.75, 1.0]))


def test_float_nan_is_an_error(tmp_path: Path) -> None:
    arr = np.array([[0.5, np.nan]], dtype=np.float32)
    path = save(tmp_path, "nan.tif", Image.fromarray(arr, "F"))
    with pytest.raises(DataError, match="NaN") as info:
        load_image(path)
    assert str(path) in str(info.value)


def test_cmyk_is_converted(tmp_path: Path) -> None:
    image = Image.new("CMYK", (4, 3), (0, 0, 0, 0))  # no ink: white
    tensor = load_image(save(tmp_path, "cmyk.jpg", image))
    check_image(tensor, 3, 4)
    assert float(tensor.min()) > 0.95


def test_uppercase_suffix_and_image_size(tmp_path: Path) -> None:
    path = save(tmp_path, "UP.PNG", Image.new("RGB", (5, 7)), format="PNG")
    assert image_size(path) == (5, 7)
    check_image(load_image(path), 7, 5)


@pytest.mark.parametrize("mode", ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"])
def test_the_numpy_reader_gives_load_images_values(tmp_path: Path, mode: str) -> None:
    """load_image_array / rgb_array (no torch: predict with onnxruntime, serve) == load_image, channels last."""
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    if mode == "I;16":
        image = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    elif mode == "F":
        image = Image.fromarray(rgb[..., 0].astype(np.float32) / 255)
    else:
        image = Image.fromarray(rgb, "RGB").convert(mode)
    expected = image_tensor(image, "x").permute(1, 2, 0).numpy()
    array = rgb_array(image, "x")
    assert image.mode == mode and array.shape == (5, 7, 3) and array.dtype == np.float32 and array.flags.c_contiguous
    np.testing.assert_array_equal(array, expected)
    path = save(tmp_path, "x.tif", image)
    np.testing.assert_array_equal(load_image_array(path), load_image(path).permute(1, 2, 0).numpy())


# --------------------------------------------------------------------------- load_mask


def check_mask(tensor: torch.Tensor, expected: np.ndarray) -> None:
    assert tensor.shape == (1, *expected.shape)
    assert tensor.dtype == torch.float32
    torch.testing.assert_close(tensor[0], torch.from_numpy(expected.astype(np.float32)))


def test_mask_l_threshold_at_128(tmp_path: Path) -> None:
    tensor = load_mask(save(tmp_path, "m.png", Image.fromarray(GREY, "L")))
    check_mask(tensor, GREY >= 128)
    assert tensor[0].tolist() == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]


def test_mask_jpeg_and_bmp(tmp_path: Path) -> None:
    check_mask(load_mask(save(tmp_path, "m.bmp", Image.fromarray(GREY, "L"))), GREY >= 128)
    block = np.zeros((16, 16), np.uint8)
    block[:, 8:] = 255
    check_mask(load_mask(save(tmp_path, "m.jpg", Image.fromarray(block, "L"))), block >= 128)


def test_mask_la_and_rgba_ignore_alpha(tmp_path: Path) -> None:
    la = np.stack([GREY, np.full_like(GREY, 255)], axis=-1)
    check_mask(load_mask(save(tmp_path, "la.png", Image.fromarray(la, "LA"))), GREY >= 128)
    rgba = np.stack([GREY, GREY, GREY, np.zeros_like(GREY)], axis=-1)
    check_mask(load_mask(save(tmp_path, "rgba.png", Image.fromarray(rgba, "RGBA"))), GREY >= 128)


def test_mask_colour_any_channel(tmp_path: Path) -> None:
    rgb = np.array([[[255, 0, 0], [0, 0, 0], [0, 127, 127], [0, 0, 200]]], dtype=np.uint8)
    tensor = load_mask(save(tmp_path, "rgb.png", Image.fromarray(rgb, "RGB")))
    check_mask(tensor, np.array([[True, False, False, True]]))


def test_mask_palette(tmp_path: Path) -> None:
    image = Image.new("P", (3, 1))
    image.putpalette([0, 0, 0, 255, 255, 255, 200, 0, 0] + [0] * (253 * 3))
    image.putdata([0, 1, 2])
    check_mask(load_mask(save(tmp_path, "p.png", image)), np.array([[False, True, True]]))


def test_mask_one_bit(tmp_path: Path) -> None:
    arr = np.array([[0, 255, 0, 255]], dtype=np.uint8)
    path = save(tmp_path, "b.png", Image.fromarray(arr, "L").convert("1", dither=Image.Dither.NONE))
    check_mask(load_mask(path), arr > 0)


def test_mask_sixteen_bit_threshold_at_half_range(tmp_path: Path) -> None:
    arr = np.array([[0, 255, 32767, 32768, 65535]], dtype=np.uint16)
    tensor = load_mask(save(tmp_path, "m16.png", Image.fromarray(arr)))
    check_mask(tensor, np.array([[False, False, False, True, True]]))


def test_mask_int32_and_float(tmp_path: Path) -> None:
    ints = np.array([[0, 32767, 32768, 65535]], dtype=np.int32)
    check_mask(load_mask(save(tmp_path, "i.tif", Image.fromarray(ints))), ints >= 32768)
    floats = np.array([[0.0, 0.49, 0.5, 1.0]], dtype=np.float32)
    check_mask(load_mask(save(tmp_path, "f.tif", Image.fromarray(floats, "F"))), floats >= 0.5)


def test_mtsd_soft_masks_threshold(mtsd_root: Path) -> None:
    for path in sorted(mtsd_root.glob("MT_*/Imgs/*.png")):
        with Image.open(path) as stored:
            raw = np.array(stored)
        check_mask(load_mask(path), raw >= 128)


# --------------------------------------------------------------------------- errors


def truncated_png(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)  # noise: no compression
    path = save(tmp_path, "trunc.png", Image.fromarray(arr, "RGB"))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def truncated_jpeg(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, size=(64, 64), dtype=np.uint8)
    path = save(tmp_path, "trunc.jpg", Image.fromarray(arr, "L"), quality=95)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def garbage(tmp_path: Path) -> Path:
    path = tmp_path / "garbage.png"
    path.write_bytes(b"this is not an image at all")
    return path


def empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    return path


def missing(tmp_path: Path) -> Path:
    return tmp_path / "nowhere" / "missing.png"


def directory(tmp_path: Path) -> Path:
    path = tmp_path / "dir.png"
    path.mkdir()
    return path


@pytest.mark.parametrize("loader", [load_image, load_mask])
@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (truncated_png, "truncated"),
        (truncated_jpeg, "truncated"),
        (garbage, "not a readable image"),
        (empty, "empty"),
        (missing, "not found"),
        (directory, "not a regular file"),
    ],
)
def test_bad_files_raise_data_error_naming_the_path(tmp_path: Path, loader, make, problem) -> None:
    path = make(tmp_path)
    with pytest.raises(DataError) as info:
        loader(path)
    assert str(path) in str(info.value)
    assert problem in str(info.value)


def test_image_size_of_bad_file(tmp_path: Path) -> None:
    path = garbage(tmp_path)
    with pytest.raises(DataError, match="not a readable image"):
        image_size(path)
