"""What a report needs beyond the numbers: per-image scores, the curves, and a gallery of examples.

Written next to results.json by every evaluation, so a report can be drawn later from the run
folder alone, without the model or the data:

* ``scores.csv``: one row per test image (path, class, defect_type, label, score);
* ``curves.json``: per category, image and pixel ROC (thinned to ``max_points``) and the PRO
  curve up to the AU-PRO limit, each with the area it summarises;
* ``gallery/``: the most and least anomalous test images as ``.npz`` (image uint8, map
  float16, mask bool, plus an ``extra_<name>`` array per map the model's ``explain_maps`` hook
  returns, e.g. PVQAE's code levels) and ``index.json`` describing them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import Dataset

from defectscope.engine.files import json_default
from defectscope.metrics.curves import pixel_curves, roc_curve, thin_curve

if TYPE_CHECKING:  # evaluate imports this module inside evaluate(); no import cycle at run time
    from defectscope.engine.evaluate import Predictions

SCORES_CSV = "scores.csv"
CURVES_JSON = "curves.json"
GALLERY_DIR = "gallery"
GALLERY_INDEX = "index.json"
FPR_LIMIT = 0.3  # AU-PRO's limit; the PRO curve is stored up to here
MAX_CURVE_POINTS = 300


def save_scores(preds: Predictions, class_names: list[str], dataset: Dataset, path: Path) -> Path:
    """scores.csv, so histograms and thresholds can be redrawn without scoring again."""
    records = getattr(dataset, "records", None)
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "class", "defect_type", "label", "score"])
        for i, image_path in enumerate(preds.paths):
            defect_type = records[i].defect_type if records is not None else ""
            writer.writerow([image_path, class_names[int(preds.class_ids[i])], defect_type,
                             int(preds.labels[i]), f"{float(preds.image_scores[i]):.6g}"])
    return path


def _points(curve: tuple[np.ndarray, np.ndarray] | None, names: tuple[str, str], x_scale: float = 1.0,
            area: float | None = None) -> dict[str, Any] | None:
    if curve is None:
        return None
    x, y = thin_curve(*curve, MAX_CURVE_POINTS, x_scale)
    out: dict[str, Any] = {names[0]: np.round(x, 5).tolist(), names[1]: np.round(y, 5).tolist()}
    if area is not None and np.isfinite(area):
        out["area"] = float(area)
    return out


def category_curves(
    preds: Predictions, class_names: list[str], metrics: dict[str, dict[str, float]], pixel: bool = True
) -> dict[str, Any]:
    """Per category: image ROC, pixel ROC and PRO up to FPR_LIMIT, thinned for plotting."""
    out: dict[str, Any] = {"fpr_limit": FPR_LIMIT, "max_points": MAX_CURVE_POINTS, "categories": {}}
    for class_id, name in enumerate(class_names):
        pick = preds.class_ids == class_id
        if not pick.any():
            continue
        found = metrics.get(name, {})
        entry = {"image_roc": _points(roc_curve(preds.image_scores[pick], preds.labels[pick]), ("fpr", "tpr"),
                                      area=found.get("image_auroc"))}
        if pixel and preds.maps.shape[0] == preds.labels.shape[0]:
            roc, pro = pixel_curves(preds.maps[pick], preds.masks[pick], FPR_LIMIT)
            entry["pixel_roc"] = _points(roc, ("fpr", "tpr"), area=found.get("pixel_auroc"))
            entry["pro"] = _points(pro, ("fpr", "pro"), x_scale=FPR_LIMIT, area=found.get("aupro"))
        out["categories"][name] = entry
    return out


def gallery_indices(scores: np.ndarray, per_end: int) -> list[tuple[str, int]]:
    """("most", i) for the per_end highest scores, then ("least", i) for the lowest, no repeats."""
    order = np.argsort(-scores, kind="stable")
    most = [int(i) for i in order[:per_end]]
    least = [int(i) for i in order[::-1][:per_end] if int(i) not in most]
    return [("most", i) for i in most] + [("least", i) for i in least]


@torch.no_grad()
def save_gallery(
    model: torch.nn.Module, preds: Predictions, dataset: Dataset, class_names: list[str], directory: Path,
    device: torch.device, per_end: int = 4,
) -> list[dict[str, Any]]:
    """The most and least anomalous test images with map, mask and any extra maps, as .npz."""
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.glob("*.npz"):
        old.unlink()
    records = getattr(dataset, "records", None)
    items = []
    for n, (end, index) in enumerate(gallery_indices(preds.image_scores, per_end)):
        sample = dataset[index]
        arrays = {
            "image": (sample.image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
            "map": preds.maps[index].astype(np.float16),
            "mask": preds.masks[index].astype(bool),
        }
        explain = getattr(model, "explain_maps", None)  # AnomalyModel's hook; {} unless a model has more to show
        if explain is not None:
            extra = explain(sample.image[None].to(device), torch.tensor([sample.class_id], device=device))
            arrays.update({f"extra_{k}": v[0].float().cpu().numpy().astype(np.float16) for k, v in extra.items()})
        name = f"{n:02d}_{end}.npz"
        np.savez_compressed(directory / name, **arrays)
        items.append({
            "file": name, "end": end, "index": index, "path": preds.paths[index],
            "score": float(preds.image_scores[index]), "label": int(preds.labels[index]),
            "class": class_names[int(preds.class_ids[index])],
            "defect_type": records[index].defect_type if records is not None else "",
            "extra_maps": sorted(k[len("extra_"):] for k in arrays if k.startswith("extra_")),
        })
    (directory / GALLERY_INDEX).write_text(json.dumps(items, indent=2))
    return items


def save_artifacts(
    model: torch.nn.Module, preds: Predictions, dataset: Dataset, class_names: list[str],
    metrics: dict[str, dict[str, float]], output_dir: Path, device: torch.device,
    pixel: bool = True, gallery_per_end: int = 4,
) -> dict[str, str]:
    """scores.csv, curves.json and gallery/ in output_dir; returns their names for results.json."""
    save_scores(preds, class_names, dataset, output_dir / SCORES_CSV)
    curves = category_curves(preds, class_names, metrics, pixel)
    (output_dir / CURVES_JSON).write_text(json.dumps(curves, allow_nan=False, default=json_default))
    was_training = model.training
    save_gallery(model.eval(), preds, dataset, class_names, output_dir / GALLERY_DIR, device, gallery_per_end)
    model.train(was_training)
    return {"scores": SCORES_CSV, "curves": CURVES_JSON, "gallery": f"{GALLERY_DIR}/{GALLERY_INDEX}"}

