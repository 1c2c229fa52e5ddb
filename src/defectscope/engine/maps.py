"""Saving anomaly maps a person can look at: input, heatmap overlay, ground truth, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from torch.utils.data import Dataset

from defectscope.engine.evaluate import Predictions


def heat_colormap(values: np.ndarray) -> np.ndarray:
    """[0, 1] → RGB uint8 with a blue–green–yellow–red ramp (no matplotlib needed)."""
    v = np.clip(values, 0, 1)[..., None]
    stops = np.array([[0, 0, 128], [0, 128, 255], [0, 220, 120], [255, 230, 0], [230, 0, 0]], np.float32)
    pos = v * (len(stops) - 1)
    lo = np.floor(pos).astype(int).clip(0, len(stops) - 2)
    frac = pos - lo
    rgb = stops[lo[..., 0]] * (1 - frac) + stops[lo[..., 0] + 1] * frac
    return rgb.astype(np.uint8)


def mask_outline(mask: np.ndarray) -> np.ndarray:
    """Pixels on the boundary of a boolean mask."""
    inner = mask.copy()
    inner[1:-1, 1:-1] = (
        mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    )
    return mask & ~inner


def overlay_panel(image: np.ndarray, anomaly_map: np.ndarray, mask: np.ndarray, scale: float) -> np.ndarray:
    """image (H, W, 3) uint8 → [input | heatmap over input | ground truth outline] uint8."""
    heat = heat_colormap(anomaly_map / scale if scale > 0 else anomaly_map)
    blend = (0.5 * image + 0.5 * heat).astype(np.uint8)
    outlined = image.copy()
    edge = mask_outline(mask)
    blend[edge] = (255, 255, 255)
    outlined[edge] = (255, 0, 0)
    return np.concatenate([image, blend, outlined], axis=1)


def save_anomaly_maps(
    preds: Predictions, dataset: Dataset, directory: Path, calibration: dict[str, float], limit: int
) -> Path:
    """The `limit` most anomalous images and a few normal ones: PNG panels plus raw .npy maps."""
    directory.mkdir(parents=True, exist_ok=True)
    scale = calibration.get("pixel_threshold") or float(np.quantile(preds.maps, 0.999)) or 1.0
    order = np.argsort(-preds.image_scores)
    picked = list(order[: max(1, limit - limit // 4)]) + list(order[::-1][: limit // 4])
    for index in dict.fromkeys(int(i) for i in picked):
        sample = dataset[index]
        image = (sample.image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        panel = overlay_panel(image, preds.maps[index], preds.masks[index], scale)
        stem = f"{preds.image_scores[index]:.4g}_{Path(preds.paths[index]).stem}"
        Image.fromarray(panel).save(directory / f"{stem}.png")
        np.save(directory / f"{stem}.npy", preds.maps[index].astype(np.float16))
    return directory
