"""Decode image and mask files into tensors, with errors that name the file.

Conversion rules (the same for every layout):

``load_image`` returns a ``(3, H, W)`` float32 tensor in ``[0, 1]``:

* ``1`` (1-bit): 0 or 1.
* ``L`` (8-bit grey), ``LA``: value / 255, replicated to 3 channels. The alpha band is dropped.
* ``P`` (palette): looked up in its palette (RGB), value / 255; palette transparency is dropped.
* ``RGB``: value / 255. ``RGBA``: the alpha band is dropped (not composited on any background),
  because industrial images that carry alpha almost always have it fully opaque.
* ``I;16`` / ``I;16B`` / ``I;16L`` (16-bit grey): value / 65535, so values above 255 keep their
  proportion instead of being clipped to 8 bits.
* ``I`` (32-bit integer, how some readers expose 16-bit data): value / 65535, clipped to [0, 1].
* ``F`` (32-bit float): taken as already in [0, 1] and clipped; NaN or infinity is an error.
* anything else (``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` ...): converted to RGB by Pillow.

Multi-frame files (TIFF, GIF) use their first frame. EXIF orientation is ignored on purpose, so
an image and its mask (which carries no EXIF) stay aligned.

``load_mask`` returns a ``(1, H, W)`` float32 tensor in ``{0, 1}`` (1 = defect):

* 8-bit modes: a pixel is defect when its value is >= 128 (soft, anti-aliased masks such as
  MTSD's are thresholded there). For colour masks (``RGB``, ``RGBA``, ``P``) a pixel is defect
  when any colour channel is >= 128; alpha is ignored.
* ``1``: set bits are defect.
* 16-bit and ``I``: >= 32768 (half range). ``F``: >= 0.5.

Files are fully decoded (``Image.load()``) with ``ImageFile.LOAD_TRUNCATED_IMAGES`` left
False, so a truncated file raises :class:`DataError` instead of yielding a half-grey image.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .errors import DataError

__all__ = ["load_image", "load_mask", "image_size", "open_checked", "image_tensor"]

PathLike = str | os.PathLike[str]


def _check_file(path: Path) -> None:
    if not path.exists():
        raise DataError(f"{path}: file not found")
    if not path.is_file():
        raise DataError(f"{path}: not a regular file")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: file is empty (0 bytes)")


def open_checked(path: PathLike) -> Image.Image:
    """Open and fully decode ``path`` (first frame); every failure becomes a DataError."""
    path = Path(path)
    _check_file(path)
    try:
        image = Image.open(path)
    except Exception as exc:  # UnidentifiedImageError, OSError, DecompressionBombError, ...
        raise DataError(f"{path}: not a readable image ({exc})") from exc
    try:
        image.load()
    except Exception as exc:  # truncated data, broken chunks, bad CRC ...
        image.close()
        raise DataError(f"{path}: image data is truncated or corrupt ({exc})") from exc
    return image


def image_size(path: PathLike) -> tuple[int, int]:
    """(width, height) read from the file header, without decoding the pixels."""
    path = Path(path)
    _check_file(path)
    try:
        with Image.open(path) as image:
            return image.size
    except Exception as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc


def _palette_to_rgb(image: Image.Image) -> Image.Image:
    # Converting a palette image that has transparency straight to RGB makes Pillow warn.
    if "transparency" in image.info:
        return image.convert("RGBA").convert("RGB")
    return image.convert("RGB")


def _image_array(image: Image.Image, path: Path) -> np.ndarray:
    """float32 array (H, W) or (H, W, 3) in [0, 1]."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=np.float32)
    if mode == "L":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode == "LA":
        return np.asarray(image.getchannel("L"), dtype=np.float32) / 255.0
    if mode == "RGB":
        return np.asarray(image, dtype=np.float32) / 255.0
    if mode in ("RGBA", "RGBa", "RGBX"):
        return np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    if mode == "P" or mode == "PA":
        return np.asarray(_palette_to_rgb(image), dtype=np.float32) / 255.0
    if mode.startswith("I;16"):
        return np.asarray(image).astype(np.float32) / 65535.0
    if mode == "I":
        return np.clip(np.asarray(image).astype(np.float64) / 65535.0, 0.0, 1.0).astype(np.float32)
    if mode == "F":
        arr = np.asarray(image, dtype=np.float32)
        if not np.isfinite(arr).all():
            raise DataError(f"{path}: float image contains NaN or infinite values")
        return np.clip(arr, 0.0, 1.0)
    try:
        rgb = image.convert("RGB")
    except Exception as exc:
        raise DataError(f"{path}: unsupported image mode {mode!r} ({exc})") from exc
    return np.asarray(rgb, dtype=np.float32) / 255.0


def _mask_array(image: Image.Image) -> np.ndarray:
    """bool array (H, W), True = defect."""
    mode = image.mode
    if mode == "1":
        return np.asarray(image, dtype=bool)
    if mode == "L":
        return np.asarray(image) >= 128
    if mode == "LA":
        return np.asarray(image.getchannel("L")) >= 128
    if mode in ("RGB", "RGBA", "RGBa", "RGBX"):
        return (np.asarray(image.convert("RGB")) >= 128).any(axis=-1)
    if mode in ("P", "PA"):
        return (np.asarray(_palette_to_rgb(image)) >= 128).any(axis=-1)
    if mode.startswith("I;16") or mode == "I":
        return np.asarray(image) >= 32768
    if mode == "F":
        return np.asarray(image, dtype=np.float32) >= 0.5
    return np.asarray(image.convert("L")) >= 128


def _to_tensor(arr: np.ndarray) -> torch.Tensor:
    arr = np.ascontiguousarray(arr)
    if not arr.flags.writeable:  # arrays viewing PIL's buffer are read-only
        arr = arr.copy()
    return torch.from_numpy(arr)


def load_image(path: PathLike) -> torch.Tensor:
    """Decode ``path`` into a ``(3, H, W)`` float32 tensor in [0, 1] (rules: module docstring).

    Raises DataError naming the path for a missing, empty, unreadable or truncated file.
    """
    path = Path(path)
    image = open_checked(path)
    try:
        return image_tensor(image, path)
    finally:
        image.close()


def image_tensor(image: Image.Image, source: PathLike) -> torch.Tensor:
    """A decoded PIL image → ``(3, H, W)`` float32 in [0, 1] by the same rules, for bytes not read from a file."""
    tensor = _to_tensor(_image_array(image, Path(source)))
    if tensor.ndim == 2:
        tensor = tensor.unsqueeze(0).expand(3, -1, -1)
    else:
        tensor = tensor.permute(2, 0, 1)
    return tensor.contiguous()


def load_mask(path: PathLike) -> torch.Tensor:
    """Decode a mask into a ``(1, H, W)`` float32 tensor in {0, 1} (rules: module docstring).

    Raises DataError naming the path for a missing, empty, unreadable or truncated file.
    """
    path = Path(path)
    image = open_checked(path)
    try:
        arr = _mask_array(image)
    finally:
        image.close()
    return _to_tensor(arr).unsqueeze(0).to(torch.float32)
