"""Evaluation metrics for unsupervised defect detection: AUROC, F1-max and MVTec AD's AU-PRO.

Pure numpy/scipy, so results can be computed (and checked) without torch or a model; every
metric is exact (all thresholds, ties handled) and vectorised to handle 10^7 pixels.
Convention everywhere: higher score = more anomalous; label/mask 1 (True) = defective.
"""

from __future__ import annotations

import numpy.typing as npt

from ._core import as_binary, as_scores, check_ndim, check_same_shape, cumulative_counts
from ._core import rank_descending as _rank_descending
from .aupro import _aupro_ranked, _check_fpr_limit, aupro
from .auroc import _auroc_from_counts, image_auroc, pixel_auroc
from .bootstrap import binned_pixel_auroc, image_auroc_interval, pixel_auroc_interval
from .f1max import _f1_max_from_counts, f1_max

__all__ = [
    "aupro", "binned_pixel_auroc", "compute_metrics", "f1_max", "image_auroc", "image_auroc_interval",
    "pixel_auroc", "pixel_auroc_interval",
]


def compute_metrics(
    image_scores: npt.ArrayLike,
    image_labels: npt.ArrayLike,
    maps: npt.ArrayLike,
    masks: npt.ArrayLike,
    *,
    fpr_limit: float = 0.3,
) -> dict[str, float]:
    """All standard metrics of one test set, after checking the inputs belong together.

    image_scores (N,), image_labels (N,) bool or 0/1, maps (N, H, W), masks (N, H, W) bool or
    0/1. Returns image_auroc, pixel_auroc, aupro (up to fpr_limit), image_f1_max, pixel_f1_max;
    a metric that is undefined for this data (e.g. no defective image) is NaN.
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
    pixel_ranking = _rank_descending(m)  # one sort of all pixels, shared by the pixel metrics
    pixel_tp, pixel_fp = cumulative_counts(g, pixel_ranking)
    return {
        "image_auroc": _auroc_from_counts(image_tp, image_fp),
        "pixel_auroc": _auroc_from_counts(pixel_tp, pixel_fp),
        "aupro": _aupro_ranked(g, pixel_ranking, limit),
        "image_f1_max": _f1_max_from_counts(image_tp, image_fp),
        "pixel_f1_max": _f1_max_from_counts(pixel_tp, pixel_fp),
    }
