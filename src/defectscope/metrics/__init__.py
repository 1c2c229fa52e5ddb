"""Evaluation metrics for unsupervised defect detection: AUROC, F1-max and MVTec AD's AU-PRO.

Pure numpy/scipy, so results can be computed (and checked) without torch or a model; every
metric is exact (all thresholds, ties handled) and vectorised to handle 10^7 pixels.
Convention everywhere: higher score = more anomalous; label/mask 1 (True) = defective.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ._core import as_binary, as_scores, check_ndim, check_same_shape, cumulative_counts
from ._core import rank_descending as _rank_descending
from .aupro import _aupro_from_curve, _check_fpr_limit, _pro_curve_ranked, aupro
from .auroc import _auroc_from_counts, image_auroc, pixel_auroc
from .bootstrap import binned_pixel_auroc, image_auroc_interval, pixel_auroc_interval
from .curves import cut_at
from .f1max import _f1_max_from_counts, f1_max

__all__ = [
    "Measurement", "aupro", "binned_pixel_auroc", "compute_metrics", "f1_max", "image_auroc", "image_auroc_interval",
    "measure", "pixel_auroc", "pixel_auroc_interval",
]

Curve = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Measurement:
    """The standard metrics of one test set and the curves they summarise (None where undefined)."""

    metrics: dict[str, float]
    image_roc: Curve | None
    pixel_roc: Curve | None
    pro: Curve | None  # cut at the AU-PRO limit


def _roc(tp: np.ndarray, fp: np.ndarray) -> Curve | None:
    if tp[-1] == 0 or fp[-1] == 0:
        return None
    return np.concatenate(([0.0], fp / fp[-1])), np.concatenate(([0.0], tp / tp[-1]))


def compute_metrics(
    image_scores: npt.ArrayLike,
    image_labels: npt.ArrayLike,
    maps: npt.ArrayLike,
    masks: npt.ArrayLike,
    *,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """All standard metrics of one test set (see `measure`, which also returns the curves)."""
    return measure(image_scores, image_labels, maps, masks, fpr_limit=fpr_limit).metrics


def measure(
    image_scores: npt.ArrayLike,
    image_labels: npt.ArrayLike,
    maps: npt.ArrayLike,
    masks: npt.ArrayLike,
    *,
    fpr_limit: float = 0.3,
    valid: npt.ArrayLike | None = None,
) -> Measurement:
    """All standard metrics of one test set and their curves, after checking the inputs belong together.

    All pixels are sorted once, the costly step at 10^7 pixels; metrics and curves share it.

    image_scores (N,), image_labels (N,) bool or 0/1, maps (N, H, W), masks (N, H, W) bool or
    0/1. Returns image_auroc, pixel_auroc, aupro (up to fpr_limit), image_f1_max, pixel_f1_max;
    a metric that is undefined for this data (e.g. no defective image) is NaN.
    `valid` (N, H, W) bool, when given, marks the pixels that count: maps of different sizes
    stored top-left in one array, or a border that is not part of the image. A defect region
    is never cut by it (the masks are zero outside).
    Raises ValueError on mismatched shapes, NaN scores or non-binary labels/masks.
    """
    s = as_scores(image_scores, "image_scores")
    y = as_binary(image_labels, "image_labels")
    m = as_scores(maps, "maps")
    g = as_binary(masks, "masks")
    check_ndim(s, 1, "image_scores", "(N,) one score per image")
    check_same_shape(s, y, "image_scores", "image_labels")
    check_ndim(m, 3, "maps", "(N, H, W)")
    check_same_shape(m, g, "maps", "masks")
    if m.shape[0] != s.shape[0]:
        raise ValueError(
            f"maps hold {m.shape[0]} images but image_scores has {s.shape[0]}: they must "
            "describe the same test images in the same order"
        )
    limit = _check_fpr_limit(fpr_limit)

    image_tp, image_fp = cumulative_counts(y, _rank_descending(s))
    v = None
    if valid is not None:
        v = as_binary(valid, "valid")
        check_same_shape(m, v, "maps", "valid")
        g = g & v
    pixel_ranking = _rank_descending(m if v is None else m[v])  # one sort of all pixels, shared by the pixel metrics
    pixel_tp, pixel_fp = cumulative_counts(g if v is None else g[v], pixel_ranking)
    pro = _pro_curve_ranked(g, pixel_ranking, v)
    metrics = {
        "image_auroc": _auroc_from_counts(image_tp, image_fp),
        "pixel_auroc": _auroc_from_counts(pixel_tp, pixel_fp),
        "aupro": _aupro_from_curve(pro, limit),
        "image_f1_max": _f1_max_from_counts(image_tp, image_fp),
        "pixel_f1_max": _f1_max_from_counts(pixel_tp, pixel_fp),
    }
    return Measurement(metrics, _roc(image_tp, image_fp), _roc(pixel_tp, pixel_fp),
                       cut_at(*pro, limit) if pro is not None else None)
