"""Decode image and mask files into tensors (or numpy arrays), with errors that name the file.

What is read: PNG, JPEG, BMP and TIFF, recognised by content; a file whose suffix names another
of these formats (a JPEG called ``.png``) is refused, as is any other format. Width x height is
checked against ``max_pixels`` (``data.max_image_pixels``) from the header, before decoding.

Conversion rules (the same for every layout):

``load_image`` returns a ``(3, H, W)`` float32 tensor in ``[0, 1]`` (``load_image_array`` the same
values as an ``(H, W, 3)`` numpy array, for the readers that run without torch):

* ``1`` (1-bit): 0 or 1.
* ``L`` (8-bit grey), ``LA``: value / 255, replicated to 3 channels. The alpha band is dropped.
* ``P`` / ``PA`` (palette): looked up in its palette (RGB), value / 255; transparency is dropped.
* ``RGB``: value / 255. ``RGBA``: the alpha band is dropped (not composited on any background),
  because industrial images that carry alpha almost always have it fully opaque.
* ``I;16`` / ``I;16B`` / ``I;16L`` / ``I;16N`` (16-bit grey): value / 65535, so values above 255
  keep their proportion instead of being clipped to 8 bits.
* ``I`` (32-bit integer, how some readers expose 16-bit data): value / 65535, clipped to [0, 1].
* ``F`` (32-bit float): taken as already in [0, 1] and clipped; NaN or infinity is an error.
* anything else (``CMYK``, ``YCbCr``, ``LAB``, ``HSV``, ``RGBX`` ...): converted to RGB by
  Pillow (``LAB`` through littlecms). A mode Pillow cannot convert (premultiplied ``La``) is a
  :class:`DataError` naming the file and the mode.

Multi-frame files (TIFF, MPO) use their first frame. EXIF orientation is ignored on purpose, so
an image and its mask (which carries no EXIF) stay aligned.

``load_mask`` returns a ``(1, H, W)`` float32 tensor in ``{0, 1}`` (1 = defect):

* ``L``, ``LA``: a pixel is defect when its value is >= 128 (soft, anti-aliased masks such as
  MTSD's are thresholded there); alpha is ignored.
* every colour or palette mode (``RGB``, ``RGBA``, ``P``, ``PA``, ``CMYK``, ``YCbCr``, ``LAB``,
  ``HSV`` ...): converted to RGB as for images; a pixel is defect when any channel is >= 128.
* ``1``: set bits are defect.
* 16-bit and ``I``: >= 32768 (half range). ``F``: >= 0.5; NaN or infinity is an error.

Files are fully decoded (``Image.load()``) with ``ImageFile.LOAD_TRUNCATED_IMAGES`` left
False, so a truncated file raises :class:`DataError` instead of yielding a half-grey image.

torch is imported only by the functions that return tensors, so the numpy readers and the header
checks work on a machine without it (`defectscope predict model.onnx`, `defectscope serve model.onnx`).
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DataError
from .limits import MAX_IMAGE_PIXELS

if TYPE_CHECKING:
    import torch

__all__ = [
    "MAX_IMAGE_PIXELS",
    "SUPPORTED_FORMATS",
    "check_image_pixels",
    "image_size",
    "image_tensor",
    "load_image",
    "load_image_array",
    "load_mask",
    "open_checked",
    "rgb_array",
]

PathLike = str | os.PathLike[str]

# Pillow's names for the formats we decode (DIB: a BMP without its file header). Limiting
# Image.open to these keeps every other plugin (EPS runs Ghostscript, for one) away from user
# files. The JPEG reader hands back multi-picture JPEGs, which some cameras write, as "MPO".
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "DIB", "TIFF")
_SUFFIX_FORMATS = {
    ".png": ("PNG",),
    ".jpg": ("JPEG", "MPO"),
    ".jpeg": ("JPEG", "MPO"),
    ".bmp": ("BMP", "DIB"),
    ".tif": ("TIFF",),
    ".tiff": ("TIFF",),
}
_PILLOW_BOMB = re.compile(r"\((\d+) pixels\)")  # DecompressionBombError's message states the size
_CAP_KEY = "data.max_image_pixels"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")


def _check_cap(max_pixels: int | None) -> None:
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels <= 0):
        raise DataError(f"{_CAP_KEY} must be a positive integer, got {max_pixels!r}")


def _open_header(path: Path, max_pixels: int | None) -> Image.Image:
    """Open ``path`` (header only), check its format against its suffix and its size against the cap."""
    _check_cap(max_pixels)
    _check_file(path)
    try:
        with warnings.catch_warnings():
            # our own cap (checked below) decides; Pillow's warning would only repeat it
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=SUPPORTED_FORMATS)
    except Image.DecompressionBombError as exc:  # above Pillow's hard limit (2x its warning level)
        found = _PILLOW_BOMB.search(str(exc))
        size = f"{int(found.group(1)):,} pixels" if found else "too many pixels"
        raise DataError(
            f"{path}: image of {size} is beyond Pillow's decompression-bomb limit of "
            f"{2 * Image.MAX_IMAGE_PIXELS:,} pixels, which {_CAP_KEY} cannot raise"
        ) from exc
    except PermissionError as exc:
        raise DataError(f"{path}: permission denied (the file is not readable)") from exc
    except UnidentifiedImageError as exc:
        raise DataError(f"{path}: not a readable image (not a PNG, JPEG, BMP or TIFF file)") from exc
    except Exception as exc:  # OSError, ValueError, SyntaxError from a broken header ...
        raise DataError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc
    try:
        _check_header(image, path, max_pixels)
    except BaseException:
        image.close()
        raise
    return image


def _check_header(image: Image.Image, path: Path, max_pixels: int | None) -> None:
    expected = _SUFFIX_FORMATS.get(path.suffix.lower())
    if expected is not None and image.format not in expected:
        raise DataError(
            f"{path}: the file holds {image.format} data but its suffix {path.suffix!r} says {expected[0]} "
            "(rename or re-save it)"
        )
    width, height = image.size
    if width <= 0 or height <= 0:
        raise DataError(f"{path}: image has no pixels ({width}x{height})")
    if max_pixels is not None and width * height > max_pixels:
        raise DataError(
            f"{path}: image of {width}x{height} = {width * height:,} pixels exceeds {_CAP_KEY} = {max_pixels:,} "
            "(raise it if images this large are intended)"
        )


def check_image_pixels(path: PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(width, height) from the header, refusing more than ``max_pixels`` before anything is decoded.

    For callers that decode images themselves (predict, serve) with the run's ``data.max_image_pixels``;
    ``None`` leaves only Pillow's own decompression-bomb limit.
    """
    path = Path(path)
    with _open_header(path, max_pixels) as image:
        return image.size


def open_checked(path: PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open and fully decode ``path`` (first frame); every failure becomes a DataError naming it."""
    path = Path(path)
    image = _open_header(path, max_pixels)
    try:
        image.load()
    except Exception as exc:  # truncated data, broken chunks, bad CRC ...
        image.close()
        raise DataError(f"{path}: image data is truncated or corrupt ({type(exc).__name__}: {exc})") from exc
    return image


def image_size(path: PathLike) -> tuple[int, int]:
    """(width, height) read from the file header, without decoding the pixels (no pixel cap)."""
    return check_image_pixels(path, None)


def _rgb(image: Image.Image, path: Path) -> np.ndarray:
    """uint8 (H, W, 3) for any colour or palette mode; DataError naming the mode when Pillow has no conversion."""
    try:
        if image.mode in ("P", "PA") and "transparency" in image.info:
            image = image.convert("RGBA")  # straight to RGB, Pillow warns about the transparency
        return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except Exception as exc:  # ValueError (no such conversion), ImageCms errors (LAB), ImportError (no littlecms)
        raise DataError(f"{path}: image mode {image.mode!r} cannot be converted to RGB ({exc})") from exc


def _finite(arr: np.ndarray, path: Path) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise DataError(f"{path}: float image (mode 'F') contains NaN or infinite values")
    return arr


def _image_array(image: Image.Image, path: Path) -> np.ndarray:
    """float32 array (H, W) or (H, W, 3) in [0, 1]."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(image.getchannel("L"), dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32) / 65535.0
    if mode == "I":
        return np.clip(np.asarray(image).astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        return np.clip(_finite(np.asarray(image, dtype=np.float32), path), 0.0, 1.0)
    return _rgb(image, path).astype(np.float32) / 255.0  # RGB, RGBA, P, PA, CMYK, YCbCr, LAB, HSV ...


def _mask_array(image: Image.Image, path: Path) -> np.ndarray:
    """bool array (H, W), True = defect."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=bool)
    if mode == "L":
        return np.asarray(image) >= 128
    if mode == "LA":
        return np.asarray(image.getchannel("L")) >= 128
    if mode.startswith("I;16") or mode == "I":
        return np.asarray(image) >= 32768
    if mode == "F":
        return _finite(np.asarray(image, dtype=np.float32), path) >= 0.5
    return (_rgb(image, path) >= 128).any(axis=-1)  # colour modes: any channel at half range


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    import torch

    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # arrays viewing PIL's buffer are read-only
        arr = arr.copy()
    return torch.from_numpy(arr)


def load_image(path: PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Decode ``path`` into a ``(3, H, W)`` float32 tensor in [0, 1] (rules: module docstring).

    Raises DataError naming the path for a missing, empty, unreadable, truncated, mislabelled or
    too large file (more than ``max_pixels``, checked before decoding), or a mode with no conversion.
    """
    path = Path(path)
    image = open_checked(path, max_pixels)
    try:
        return image_tensor(image, path)
    finally:
        image.close()


def load_image_array(path: PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> np.ndarray:
    """``load_image`` without torch: the same values as an ``(H, W, 3)`` float32 array in [0, 1]."""
    path = Path(path)
    image = open_checked(path, max_pixels)
    try:
        return rgb_array(image, path)
    finally:
        image.close()


def rgb_array(image: Image.Image, source: PathLike) -> np.ndarray:
    """A decoded PIL image → ``(H, W, 3)`` float32 in [0, 1] by the module's rules; numpy only."""
    arr = _image_array(image, Path(source))
    return np.repeat(arr[..., None], 3, axis=2) if arr.ndim == 2 else np.ascontiguousarray(arr)


def image_tensor(image: Image.Image, source: PathLike) -> torch.Tensor:
    """A decoded PIL image → ``(3, H, W)`` float32 in [0, 1] by the same rules, for bytes not read from a file."""
    tensor = _to_tensor(_image_array(image, Path(source)))
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0).expand(3, -1, -1)
    else:
        tensor = tensor.permute(2, 0, 1)
    return tensor.contiguous()


def load_mask(path: PathLike, max_pixels: int | None = MAX_IMAGE_PIXELS) -> torch.Tensor:
    """Decode a mask into a ``(1, H, W)`` float32 tensor in {0, 1} (rules: module docstring).

    Raises DataError for the same problems as :func:`load_image`.
    """
    path = Path(path)
    image = open_checked(path, max_pixels)
    try:
        arr = _mask_array(image, path)
    finally:
        image.close()
    import torch

    return _to_tensor(arr).unsqueeze(0).to(torch.float32)
