"""The one gallery writer: the most and least anomalous test images, for people and for the report.

Every evaluation writes ``gallery/`` (``.npz`` per image: image uint8, map float16, mask bool,
plus an ``extra_<name>`` array per map the model's ``explain_maps`` returns, and ``index.json``)
so `defectscope report` can draw it later without the model or the data. With pictures on
(``--save-maps``) the same pass also writes ``maps/``: PNG panels (input | anomaly map over the
input | ground truth | the model's own maps) and each raw map as ``.npy``. Images are picked once
and the model's extra maps are computed once per picked image.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw
from torch.utils.data import Dataset

from defectscope.data.sample import Sample
from defectscope.engine.predictions import Predictions
from defectscope.heatmap import heat_colormap
from defectscope.models.base import AnomalyModel

GALLERY_DIR = "gallery"
GALLERY_INDEX = "index.json"
MAPS_DIR = "maps"


@dataclass(frozen=True)
class GalleryPlan:
    """How many images to keep from each end of the score ranking, and where."""

    per_end: int = 4  # gallery/ for the report: this many most and least anomalous images
    pictures: int = 0  # maps/ PNG panels: this many, three quarters from the top, a quarter from the bottom


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


def ranked_ends(scores: np.ndarray, most: int, least: int) -> list[tuple[str, int]]:
    """("most", i) for the `most` highest scores, then ("least", i) for the `least` lowest, no repeats."""
    order = np.argsort(-scores, kind="stable")
    top = [int(i) for i in order[:most]]
    bottom = [int(i) for i in order[::-1][:least] if int(i) not in top]
    return [("most", i) for i in top] + [("least", i) for i in bottom]


def gallery_indices(scores: np.ndarray, per_end: int) -> list[tuple[str, int]]:
    """The report's gallery: per_end most and per_end least anomalous images."""
    return ranked_ends(scores, per_end, per_end)


def picture_indices(scores: np.ndarray, count: int) -> list[tuple[str, int]]:
    """The pictures: three quarters of `count` from the top of the ranking, the rest from the bottom."""
    return ranked_ends(scores, max(1, count - count // 4), count // 4) if count > 0 else []


def shown_image(sample: Sample, hw: tuple[int, int]) -> torch.Tensor:
    """The sample's own pixels (border cut off), at the size of the map drawn over them."""
    top, left, height, width = (int(v) for v in sample.box)
    image = sample.image[:, top:top + height, left:left + width]
    if tuple(image.shape[-2:]) != tuple(hw):
        image = F.interpolate(image[None], size=tuple(hw), mode="bilinear", align_corners=False)[0].clamp(0, 1)
    return image


@torch.no_grad()
def write_gallery(
    model: AnomalyModel, preds: Predictions, dataset: Dataset, class_names: list[str], output_dir: Path,
    device: torch.device, plan: GalleryPlan, pixel_threshold: float | None = None, tiled: bool = False,
) -> dict[str, str]:
    """gallery/ (always) and maps/ (when plan.pictures > 0) in output_dir; returns what was written."""
    gallery = {i: e for e, i in gallery_indices(preds.image_scores, plan.per_end)}
    pictures = [i for _, i in picture_indices(preds.image_scores, plan.pictures)]
    wanted = list(dict.fromkeys([*gallery, *pictures]))
    records = getattr(dataset, "records", None)
    was_training = model.training
    model.eval()
    extras: dict[int, dict[str, np.ndarray]] = {}
    for index in wanted:  # one image at a time: batching would hold every extra map of the gallery at once
        sample = dataset[index]
        extras[index] = {}
        if tuple(sample.image.shape[-2:]) != tuple(preds.one(index)[0].shape) or tiled:
            continue  # a model's own extra maps are drawn only where its input is the whole image as shown
        found = model.explain_maps(sample.image[None].to(device), torch.tensor([sample.class_id], device=device))
        extras[index] = {k: v[0].float().cpu().numpy() for k, v in found.items()}
    model.train(was_training)

    written = {"gallery": f"{GALLERY_DIR}/{GALLERY_INDEX}"}
    directory = output_dir / GALLERY_DIR
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.npz"):
        old.unlink()
    items = []
    for n, (index, end) in enumerate(gallery.items()):
        sample = dataset[index]
        anomaly_map, mask = preds.one(index)
        arrays = {
            "image": (shown_image(sample, anomaly_map.shape).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
            "map": anomaly_map.astype(np.float16),
            "mask": mask.astype(bool),
            **{f"extra_{k}": v.astype(np.float16) for k, v in extras[index].items()},
        }
        name = f"{n:02d}_{end}.npz"
        np.savez_compressed(directory / name, **arrays)
        items.append({
            "file": name, "end": end, "index": index, "path": preds.paths[index],
            "score": float(preds.image_scores[index]), "label": int(preds.labels[index]),
            "class": class_names[int(preds.class_ids[index])],
            "defect_type": records[index].defect_type if records is not None else "",
            "extra_maps": sorted(extras[index]),
        })
    (directory / GALLERY_INDEX).write_text(json.dumps(items, indent=2))

    if pictures:
        maps_dir = output_dir / MAPS_DIR
        maps_dir.mkdir(parents=True, exist_ok=True)
        scale = pixel_threshold or float(np.quantile(preds.pixels()[0], 0.999)) or 1.0
        for index in pictures:
            image = shown_image(dataset[index], preds.one(index)[0].shape)
            _write_picture(image, preds, index, extras[index], scale, maps_dir)
        written["maps_dir"] = str(maps_dir)
    return written


def _write_picture(image_chw: torch.Tensor, preds: Predictions, index: int, extra: dict[str, np.ndarray],
                   scale: float, directory: Path) -> None:
    image = (image_chw.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    width = image.shape[1]
    anomaly_map, mask = preds.one(index)
    panel = overlay_panel(image, anomaly_map, mask, scale)
    panels: list[tuple[str, Any]] = [("input", panel[:, :width]), ("anomaly map", panel[:, width : 2 * width]),
                                     ("ground truth", panel[:, 2 * width :])]
    panels += [(name, extra_panel(value)) for name, value in extra.items()]
    stem = f"{preds.image_scores[index]:.4g}_{Path(preds.paths[index]).stem}"
    Image.fromarray(labelled_row(panels)).save(directory / f"{stem}.png")
    np.save(directory / f"{stem}.npy", anomaly_map.astype(np.float16))
