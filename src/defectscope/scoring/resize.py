"""The resizes of `Detector`, in numpy, for runtimes without torch.

`resize_to_square` is `defectscope.data.transforms.resize_image` (torch's bilinear with
antialias=True, which is PIL's BILINEAR filter: a triangle stretched over the source pixels one
output pixel covers, weights normalised over the pixels inside the image); `resize_map` is
`F.interpolate(..., mode="bilinear", align_corners=False)` without antialias, how `Detector` takes
a map back to the image's size. Both are separable, so each is two small matrix products; the
weights follow ATen's CPU kernels (UpSampleKernel.cpp), and tests/export checks them against torch.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from defectscope.geometry import Box, Resize, fitted_box

__all__ = ["antialias_weights", "bilinear_weights", "fit_array", "resize_map", "resize_to", "resize_to_square"]


@lru_cache(maxsize=64)
def antialias_weights(in_size: int, out_size: int) -> np.ndarray:
    """(out, in) float32 rows of torch's antialiased bilinear resize along one axis."""
    scale = in_size / out_size
    support = scale if scale >= 1.0 else 1.0  # the triangle's half-width in source pixels
    invscale = 1.0 / scale if scale >= 1.0 else 1.0
    weights = np.zeros((out_size, in_size), np.float64)
    for i in range(out_size):
        center = scale * (i + 0.5)
        lo = max(int(center - support + 0.5), 0)  # int() truncates toward zero, as ATen's int64 cast
        hi = min(int(center + support + 0.5), in_size)
        taps = np.clip(1.0 - np.abs((np.arange(lo, hi) - center + 0.5) * invscale), 0.0, None)
        total = taps.sum()
        weights[i, lo:hi] = taps / total if total != 0 else taps
    return _frozen(weights)


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


def _frozen(weights: np.ndarray) -> np.ndarray:
    """float32 and read-only: the arrays are cached and shared between calls (and threads)."""
    out = weights.astype(np.float32)
    out.setflags(write=False)
    return out


def resize_to(image: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] → (3, h, w) float32, as `data.geometry.fit` resizes a (3, H, W) tensor."""
    chw = np.ascontiguousarray(image.transpose(2, 0, 1), dtype=np.float32)
    height, width = chw.shape[-2:]
    if (height, width) == tuple(hw):
        return chw
    out = antialias_weights(height, hw[0]) @ chw @ antialias_weights(width, hw[1]).T  # (3, h, w)
    return np.clip(out, 0.0, 1.0, out=out)


def resize_to_square(image: np.ndarray, size: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] → (3, size, size) float32."""
    return resize_to(image, (size, size))


def fit_array(image: np.ndarray, size_hw: tuple[int, int], resize: Resize) -> tuple[np.ndarray, Box]:
    """(H, W, 3) → (3, canvas) and the image's box in it, as `defectscope.data.geometry.fit` places it."""
    canvas, box = fitted_box(image.shape[:2], size_hw, resize)
    inner = resize_to(image, (box.height, box.width))
    if (box.height, box.width) == tuple(canvas):
        return inner, box
    out = np.zeros((3, *canvas), np.float32)
    out[:, box.top:box.top + box.height, box.left:box.left + box.width] = inner
    return out, box


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map → (H, W) float32 with plain bilinear sampling, as `Detector` returns it."""
    if tuple(anomaly_map.shape) == tuple(size):
        return np.asarray(anomaly_map, dtype=np.float32)
    height, width = anomaly_map.shape
    return bilinear_weights(height, size[0]) @ anomaly_map.astype(np.float32) @ bilinear_weights(width, size[1]).T
