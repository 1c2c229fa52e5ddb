"""Heatmap colours and the heatmap-over-input picture, with numpy and Pillow only.

A leaf module (it imports nothing from defectscope), shared by the gallery (`engine.gallery`), the
service's overlay (`serve.images`) and `defectscope predict`'s map pictures, so that all three
colour a map the same way and the last two work on a machine without torch.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

__all__ = ["fit_size", "heat_colormap", "heat_overlay"]


def heat_colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] → RGB uint8 with a blue–green–yellow–red ramp (no matplotlib needed)."""
    v = np.clip(values, 0, 1)[..., None]
    stops = np.array([[0, 0, 128], [0, 128, 255], [0, 220, 120], [255, 230, 0], [230, 0, 0]], np.float32)
    pos = v * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = pos - lo
    rgb = stops[lo[..., 0]] * (1 - frac) + stops[lo[..., 0] + 1] * frac
    return rgb.astype(np.uint8)


def fit_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) shrunk, never grown, so that the longer side fits `max_side`."""
    scale = min(1.0, max_side / max(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def heat_overlay(image: np.ndarray, anomaly_map: np.ndarray, high: float | None, max_side: int,
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(input, heatmap over input, half and half), both (h, w, 3) uint8 at the input's size shrunk to fit `max_side`.

    `image` is (H, W, 3) in [0, 1], `anomaly_map` (H, W). Colours run blue → red from the map's own
    median to `high` (the pixel threshold; None: the map's maximum), so red marks pixels at or above
    the threshold whatever the model's units: a map that never comes near 0 (PaDiM's Mahalanobis
    distances) still shows its structure instead of one flat colour.
    """
    height, width = anomaly_map.shape
    size = fit_size(width, height, max_side)
    rgb = np.asarray(Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize(size, Image.BILINEAR))
    amap = np.asarray(Image.fromarray(anomaly_map.astype(np.float32), "F").resize(size, Image.BILINEAR))
    high = float(amap.max()) if high is None else high
    low = min(float(np.median(amap)), high)
    heat = heat_colormap((amap - low) / (high - low) if high > low else (amap >= high).astype(np.float32))
    blend = (0.5 * rgb.astype(np.float32) + 0.5 * heat).astype(np.uint8)
    return rgb, blend
