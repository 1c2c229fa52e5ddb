"""Saving anomaly maps a person can look at: input, heatmap overlay, ground truth, side by side."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from defectscope.engine.evaluate import Predictions
from defectscope.models.base import AnomalyModel


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


def labelled_row(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels (H, W, 3) uint8 side by side, each with its name written above it."""
    height = 14
    tiles = []
    for name, panel in panels:
        strip = Image.new("RGB", (panel.shape[1], height), (255, 255, 255))
        ImageDraw.Draw(strip).text((3, 1), name, fill=(0, 0, 0))
        tiles.append(np.concatenate([np.asarray(strip), panel], axis=0))
    return np.concatenate(tiles, axis=1)


def extra_panel(values: np.ndarray) -> np.ndarray:
    """A model's own map, scaled to its 99.5th percentile (its units differ from the score's).

    A map of a few levels already in [0, 1] (e.g. code levels) keeps its scale, so colours
    mean the same level in every picture.
    """
    if values.min() >= 0 and values.max() <= 1 and len(np.unique(values)) <= 8:
        return heat_colormap(values)
    top = float(np.quantile(values, 0.995))
    return heat_colormap(values / top if top > 0 else values)


def save_anomaly_maps(
    preds: Predictions, dataset: Dataset, directory: Path, calibration: dict[str, float], limit: int,
    model: AnomalyModel | None = None, device: torch.device | None = None,
) -> Path:
    """The `limit` most anomalous images and a few normal ones: PNG panels plus raw .npy maps.

    Each PNG: input | anomaly map over the input | ground truth, then every map the model's
    `explain_maps` returns (PVQAE: code-level maps, S_budget, S_rec).
    """
    directory.mkdir(parents=True, exist_ok=True)
    scale = calibration.get("pixel_threshold") or float(np.quantile(preds.maps, 0.999)) or 1.0
    order = np.argsort(-preds.image_scores)
    picked = list(order[: max(1, limit - limit // 4)]) + list(order[::-1][: limit // 4])
    for index in dict.fromkeys(int(i) for i in picked):
        sample = dataset[index]
        image = (sample.image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        size = image.shape[1]
        panel = overlay_panel(image, preds.maps[index], preds.masks[index], scale)
        panels = [("input", panel[:, :size]), ("anomaly map", panel[:, size : 2 * size]),
                  ("ground truth", panel[:, 2 * size :])]
        if model is not None:
            with torch.no_grad():
                class_id = torch.tensor([sample.class_id], device=device)
                extra = model.explain_maps(sample.image[None].to(device), class_id)
            panels += [(name, extra_panel(value[0].float().cpu().numpy())) for name, value in extra.items()]
        panel = labelled_row(panels)
        stem = f"{preds.image_scores[index]:.4g}_{Path(preds.paths[index]).stem}"
        Image.fromarray(panel).save(directory / f"{stem}.png")
        np.save(directory / f"{stem}.npy", preds.maps[index].astype(np.float16))
    return directory
