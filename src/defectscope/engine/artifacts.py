"""What a report needs beyond the numbers: per-image scores and the curves.

Written next to results.json by every evaluation, so a report can be drawn later from the run
folder alone, without the model or the data:

* ``scores.csv``: one row per test image (path, class, defect_type, label, score);
* ``curves.json``: per category, image and pixel ROC (thinned to ``MAX_CURVE_POINTS``) and the
  PRO curve up to the AU-PRO limit, each with the area it summarises. The curves come from the
  same sort of the pixels as the metrics (`metrics.measure`).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from defectscope.engine.predictions import Predictions
from defectscope.metrics import Measurement
from defectscope.metrics.curves import thin_curve

SCORES_CSV = "scores.csv"
CURVES_JSON = "curves.json"
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


def category_curves(measured: dict[str, Measurement]) -> dict[str, Any]:
    """Per category: image ROC, pixel ROC and PRO up to FPR_LIMIT, thinned for plotting."""
    out: dict[str, Any] = {"fpr_limit": FPR_LIMIT, "max_points": MAX_CURVE_POINTS, "categories": {}}
    for name, m in measured.items():
        entry = {"image_roc": _points(m.image_roc, ("fpr", "tpr"), area=m.metrics.get("image_auroc"))}
        if "pixel_auroc" in m.metrics:
            entry["pixel_roc"] = _points(m.pixel_roc, ("fpr", "tpr"), area=m.metrics.get("pixel_auroc"))
            entry["pro"] = _points(m.pro, ("fpr", "pro"), x_scale=FPR_LIMIT, area=m.metrics.get("aupro"))
        out["categories"][name] = entry
    return out
