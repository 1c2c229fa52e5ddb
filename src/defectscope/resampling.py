"""Image and map resampling in numpy: the one resize every path uses, training included.

`resize_chw` is torch's bilinear with antialias=True (PIL's BILINEAR filter: a triangle stretched
over the source pixels one output pixel covers, weights normalised over the pixels inside the
image); `bilinear_weights` is `F.interpolate(..., mode="bilinear", align_corners=False)` without
antialias, how a map goes back to the image's size. Both are separable: each is two sparse
products. The dataset (training, calibration, evaluation), the torch `Detector` and the
onnxruntime runtime all resize with these functions and round to 8 bits (`to_8_bits`), so a file
gives the network the same values on every path; two implementations would sum in other orders
and round a value on a half step apart. No torch here: the onnxruntime runtime runs without it.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
from scipy import sparse

__all__ = ["antialias_weights", "bilinear_weights", "resize_chw", "resize_to", "resize_to_square", "separable",
           "to_8_bits"]


@lru_cache(maxsize=64)
def antialias_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) float32 rows of torch's antialiased bilinear resize along one axis."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0  # the triangle's half-width in source pixels
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    center = scale * (np.arange(out_size) + 0.5)
    lo = np.maximum(np.trunc(center - support + 0.5), 0)  # truncated toward zero, as ATen's int64 cast
    hi = np.minimum(np.trunc(center + support + 0.5), in_size)
    source = np.arange(in_size)[None, :]
    inside = (source >= lo[:, None]) & (source < hi[:, None])
    taps = np.where(inside, np.clip(1.0 - np.abs((source - center[:, None] + 0.5) * invscale), 0.0, None), 0.0)
    total = taps.sum(axis=1, keepdims=True)
    return _frozen(np.divide(taps, total, out=taps.copy(), where=total != 0))


@lru_cache(maxsize=64)
def bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) float32 rows of torch's plain bilinear resize (align_corners=False) along one axis."""
    # source positions as ATen computes them for float maps: a float32 scale, then scale·(i + ½) − ½
    # rounded once to float32 (a fused multiply-add); exact float64 positions would be up to
    # ~1e-5 pixel off at a few hundred pixels, and so would the map
    scale = np.float64(np.float32(in_size) / np.float32(out_size))
    source = np.maximum((scale * (np.arange(out_size) + 0.5) - 0.5).astype(np.float32), np.float32(0.0))
    i0 = np.minimum(np.floor(source).astype(np.int64), in_size - 1)
    lam = np.clip(source - i0.astype(np.float32), np.float32(0.0), np.float32(1.0))
    weights = np.zeros((out_size, in_size), np.float32)
    rows = np.arange(out_size)
    np.add.at(weights, (rows, i0), np.float32(1.0) - lam)
    np.add.at(weights, (rows, np.minimum(i0 + 1, in_size - 1)), lam)
    return _frozen(weights)


@lru_cache(maxsize=256)
def _sparse(kind: str, in_size: int, out_size: int) -> sparse.csr_array:
    """The weights as a sparse matrix: each output pixel has a few source pixels (a dense product
    of a 256-pixel side with a 600-pixel one spends 99 % of its time on zeros)."""
    weights = antialias_weights(in_size, out_size) if kind == "antialias" else bilinear_weights(in_size, out_size)
    return sparse.csr_array(weights)


def separable(image: np.ndarray, kind: str, hw: tuple[int, int]) -> np.ndarray:
    """(C, H, W) → (C, h, w): rows, then columns, each one sparse product over all channels at once."""
    channels, height, width = image.shape
    rows = _sparse(kind, height, hw[0]) @ image.transpose(1, 0, 2).reshape(height, channels * width)
    rows = rows.reshape(hw[0], channels, width).transpose(2, 1, 0).reshape(width, channels * hw[0])
    out = (_sparse(kind, width, hw[1]) @ rows).reshape(hw[1], channels, hw[0]).transpose(1, 2, 0)
    return np.ascontiguousarray(out, dtype=np.float32)


def _frozen(weights: np.ndarray) -> np.ndarray:
    """float32 and read-only: the arrays are cached and shared between calls (and threads)."""
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


def resize_chw(chw: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(C, H, W) float32 in [0, 1] → (C, h, w) float32: bilinear with antialias, clipped to [0, 1]."""
    chw = np.asarray(chw, dtype=np.float32)
    if tuple(chw.shape[-2:]) == tuple(hw):
        return chw
    out = separable(chw, "antialias", hw)
    return np.clip(out, 0.0, 1.0, out=out)


def resize_to(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] → (3, h, w) float32."""
    return resize_chw(np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32), hw)


def resize_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] → (3, size, size) float32."""
    return resize_to(image, (size, size))


def to_8_bits(image: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] rounded to the nearest k/255, as the dataset's `to_uint8` then `from_uint8`.

    Training, calibration and evaluation see every image at the working size in 8 bits (the
    dataset keeps them so); a part on the line must be scored on the same values, or its score
    moves by the rounding: PaDiM's by up to 4 % on MTSD, enough to cross a threshold set on
    rounded images.
    """
    return (np.clip(np.rint(image * np.float32(255.0)), 0, 255).astype(np.float32) / np.float32(255.0))
