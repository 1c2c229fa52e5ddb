"""Area under the ROC curve for image scores and for per-pixel maps.

Computed exactly from one sort and integer counts (the Mann-Whitney statistic, tied scores count
one half), so it scales to 10^7 pixels and agrees with sklearn's roc_auc_score. When only one
class is present the AUROC is undefined: we return NaN instead of raising, since a category
with no defective test images is a property of the data, not a bug in the caller.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._core import (
    Ranking,
    as_binary,
    as_scores,
    check_ndim,
    check_same_shape,
    cumulative_counts,
    rank_descending,
)


def image_auroc(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """AUROC of per-image scores (N,) against labels (N,), 1/True = defective. NaN if one class."""
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    check_ndim(s, 1, "scores", "(N,) one score per image")
    check_same_shape(s, y, "scores", "labels")
    return _auroc_ranked(y, rank_descending(s))


def pixel_auroc(maps: npt.ArrayLike, masks: npt.ArrayLike) -> float:
    """AUROC over all pixels of (N, H, W) maps against (N, H, W) ground-truth masks.

    Every pixel of every image is one sample, good images included. NaN if one class.
    """
    m = as_scores(maps, "maps")
    g = as_binary(masks, "masks")
    check_ndim(m, 3, "maps", "(N, H, W)")
    check_same_shape(m, g, "maps", "masks")
    return _auroc_ranked(g, rank_descending(m))


def _auroc_ranked(labels: np.ndarray, ranking: Ranking) -> float:
    tp, fp = cumulative_counts(labels, ranking)
    return _auroc_from_counts(tp, fp)


def _auroc_from_counts(tp: np.ndarray, fp: np.ndarray) -> float:
    """Trapezoid area of the ROC staircase, in integers until the final division.

    A run of tied scores holding p positives and n negatives is a diagonal segment: it adds
    n * (positives above) + n * p / 2, which is the Mann-Whitney count with ties as halves.
    """
    num_pos, num_neg = int(tp[-1]), int(fp[-1])
    if num_pos == 0 or num_neg == 0:
        return float("nan")
    tp0 = np.concatenate(([0], tp))
    fp0 = np.concatenate(([0], fp))
    twice_area = int(np.sum(np.diff(fp0) * (tp0[1:] + tp0[:-1])))
    return twice_area / (2.0 * num_pos * num_neg)
