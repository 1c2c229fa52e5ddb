"""Images of any size onto the working canvas, and maps back, for `Detector` and the onnxruntime runtime.

The resampling itself is `defectscope.resampling`, the one the dataset uses too, so an image
reaches the network with the values training and calibration gave it; its weights follow ATen's
CPU kernels (UpSampleKernel.cpp), and tests/scoring checks them against torch.
"""

from __future__ import annotations

import numpy as np

from defectscope.geometry import Box, Resize, fitted_box
from defectscope.resampling import (
    antialias_weights,
    bilinear_weights,
    resize_to,
    resize_to_square,
    separable,
    to_8_bits,
)

__all__ = ["antialias_weights", "bilinear_weights", "fit_array", "resize_map", "resize_to", "resize_to_square",
           "to_8_bits"]


def fit_array(image: np.ndarray, size_hw: tuple[int, int], resize: Resize) -> tuple[np.ndarray, Box]:
    """(H, W, 3) → (3, canvas) and the image's box in it, as `defectscope.data.geometry.fit` places it, in 8 bits."""
    canvas, box = fitted_box(image.shape[:2], size_hw, resize)
    inner = to_8_bits(resize_to(image, (box.height, box.width)))
    if (box.height, box.width) == tuple(canvas):
        return inner, box
    out = np.zeros((3, *canvas), np.float32)
    out[:, box.top:box.top + box.height, box.left:box.left + box.width] = inner
    return out, box


def resize_map(anomaly_map: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) map → (H, W) float32 with plain bilinear sampling, as `Detector` returns it."""
    if tuple(anomaly_map.shape) == tuple(size):
        return np.asarray(anomaly_map, dtype=np.float32)
    return separable(np.asarray(anomaly_map, dtype=np.float32)[None], "bilinear", tuple(size))[0]
