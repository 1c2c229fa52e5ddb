"""The curves behind the area metrics (ROC, PRO), so a report can draw what a number summarises.

Same conventions and the same one-sort sweep as the metrics in this package: higher score =
more anomalous, tied scores collapse to one point, curves start at (0, 0). The areas under
these curves reproduce `image_auroc`, `pixel_auroc` and `aupro` exactly (before thinning).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._core import as_binary, as_scores, check_ndim, check_same_shape, cumulative_counts, rank_descending
from .aupro import _check_fpr_limit, _pro_curve_ranked


def roc_curve(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, tpr) at (0, 0) and every distinct threshold of any-shape scores; None if one class."""
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    check_same_shape(s, y, "scores", "labels")
    tp, fp = cumulative_counts(y, rank_descending(s))
    if tp[-1] == 0 or fp[-1] == 0:
        return None
    return np.concatenate(([0.0], fp / fp[-1])), np.concatenate(([0.0], tp / tp[-1]))


def pro_curve(
    maps: npt.ArrayLike, masks: npt.ArrayLike, fpr_limit: float = 1.0
) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, pro) of (N, H, W) maps, cut at fpr_limit with the PRO interpolated there; None if undefined."""
    m = as_scores(maps, "maps")
    g = as_binary(masks, "masks")
    check_ndim(m, 3, "maps", "(N, H, W)")
    check_same_shape(m, g, "maps", "masks")
    curve = _pro_curve_ranked(g, rank_descending(m))
    if curve is None:
        return None
    return cut_at(*curve, _check_fpr_limit(fpr_limit))


def pixel_curves(
    maps: npt.ArrayLike, masks: npt.ArrayLike, fpr_limit: float = 0.3
) -> tuple[tuple[np.ndarray, np.ndarray] | None, tuple[np.ndarray, np.ndarray] | None]:
    """(pixel ROC, PRO cut at fpr_limit) from one sort of all pixels, the costly step at 10^7 pixels."""
    m = as_scores(maps, "maps")
    g = as_binary(masks, "masks")
    check_ndim(m, 3, "maps", "(N, H, W)")
    check_same_shape(m, g, "maps", "masks")
    limit = _check_fpr_limit(fpr_limit)
    ranking = rank_descending(m)
    tp, fp = cumulative_counts(g, ranking)
    roc = None
    if tp[-1] > 0 and fp[-1] > 0:
        roc = np.concatenate(([0.0], fp / fp[-1])), np.concatenate(([0.0], tp / tp[-1]))
    pro = _pro_curve_ranked(g, ranking)
    return roc, (cut_at(*pro, limit) if pro is not None else None)


def cut_at(x: np.ndarray, y: np.ndarray, x_max: float) -> tuple[np.ndarray, np.ndarray]:
    """The part of a non-decreasing-x curve with x <= x_max, closed by a point interpolated at x_max."""
    ins = int(np.searchsorted(x, x_max, side="right"))
    xs, ys = x[:ins], y[:ins]
    if ins < x.size and xs[-1] < x_max:
        y_at = ys[-1] + (y[ins] - ys[-1]) * (x_max - xs[-1]) / (x[ins] - xs[-1])
        xs, ys = np.append(xs, x_max), np.append(ys, y_at)
    return xs, ys


def thin_curve(
    x: np.ndarray, y: np.ndarray, max_points: int = 300, x_scale: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """At most max_points points spread evenly along the curve's length, ends kept.

    Even spacing in arc length (x divided by x_scale, so a curve cut at FPR 0.3 uses its
    whole width) keeps both the steep start of a pixel ROC and its long flat tail visible,
    which even spacing in threshold index or in x would not.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size <= max_points:
        return x, y
    steps = np.hypot(np.diff(x) / x_scale, np.diff(y))
    length = np.concatenate(([0.0], np.cumsum(steps)))
    targets = np.linspace(0.0, length[-1], max_points)
    keep = np.unique(np.clip(np.searchsorted(length, targets), 0, x.size - 1))
    keep[0], keep[-1] = 0, x.size - 1
    keep = np.unique(keep)
    return x[keep], y[keep]
