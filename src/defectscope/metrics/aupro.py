"""Area under the per-region-overlap (PRO) curve, as defined by MVTec AD.

Pixel AUROC is dominated by large defects; PRO gives every connected defect region the same
weight, so a small scratch counts as much as a large stain. Following the MVTec AD evaluation
code exactly:

* regions are the 8-connected components of each image's ground-truth mask;
* the false-positive rate counts every defect-free pixel of every test image, good images too;
* at threshold t, region r's overlap is |{p in r: score(p) >= t}| / |r| and PRO(t) is the mean
  over all regions;
* the curve is taken at every distinct score (tied scores collapse to one point), starting at
  (0, 0); its trapezoid area up to FPR = fpr_limit, with linear interpolation at fpr_limit, is
  divided by fpr_limit so a perfect map scores 1.0.

Vectorised: one argsort of all pixel scores; a normal pixel adds 1/num_normal to the FPR and a
pixel of region r adds 1/(|r| * num_regions) to PRO, so the curve is two cumulative sums.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from ._core import Ranking, as_binary, as_scores, check_ndim, check_same_shape, rank_descending

# 3x3 ones within an image (8-connectivity) and nothing across the image axis, so one call to
# ndimage.label labels every image separately with globally unique region ids.
_STRUCTURE_8 = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE_8[1] = True


def aupro(maps: npt.ArrayLike, masks: npt.ArrayLike, fpr_limit: float = 0.3) -> float:
    """Normalised area under the PRO curve up to FPR = fpr_limit (MVTec AD's AU-PRO).

    maps: (N, H, W) anomaly scores; masks: (N, H, W) bool or 0/1 ground truth.
    NaN when there is no defect region or no defect-free pixel.
    """
    m = as_scores(maps, "maps")
    g = as_binary(masks, "masks")
    check_ndim(m, 3, "maps", "(N, H, W)")
    check_same_shape(m, g, "maps", "masks")
    limit = _check_fpr_limit(fpr_limit)
    return _aupro_ranked(g, rank_descending(m), limit)


def _check_fpr_limit(fpr_limit: float) -> float:
    try:
        limit = float(fpr_limit)
    except (TypeError, ValueError) as err:
        raise ValueError(f"fpr_limit must be a number in (0, 1], got {fpr_limit!r}") from err
    if not 0.0 < limit <= 1.0:  # also refuses NaN
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit!r}")
    return limit


def _aupro_ranked(masks: np.ndarray, ranking: Ranking, fpr_limit: float) -> float:
    return _aupro_from_curve(_pro_curve_ranked(masks, ranking), fpr_limit)


def _aupro_from_curve(curve: tuple[np.ndarray, np.ndarray] | None, fpr_limit: float) -> float:
    if curve is None:
        return float("nan")
    fpr, pro = curve
    return float(_area_up_to(fpr, pro, fpr_limit) / fpr_limit)


def _pro_curve_ranked(
    masks: np.ndarray, ranking: Ranking, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(fpr, pro) at (0, 0) and then every distinct threshold, highest first; None if undefined.

    With `valid`, `ranking` orders the valid pixels only (masks must be zero outside them).
    """
    regions, num_regions = ndimage.label(masks, structure=_STRUCTURE_8)
    if num_regions == 0:
        return None
    flat_regions = regions.ravel() if valid is None else regions[valid]
    sizes = np.bincount(flat_regions, minlength=num_regions + 1)
    num_normal = int(sizes[0])  # id 0 = background = every defect-free pixel of every image
    if num_normal == 0:
        return None
    inv_size = np.zeros(num_regions + 1, dtype=np.float64)
    inv_size[1:] = 1.0 / sizes[1:]

    ranked_regions = flat_regions[ranking.order]
    # FPR from integer counts (exact); PRO as sum_r (covered pixels of r / |r|) / num_regions.
    fp = np.cumsum(ranked_regions == 0, dtype=np.int64)[ranking.run_ends]
    pro_sum = np.cumsum(inv_size[ranked_regions])[ranking.run_ends]
    fpr = fp / num_normal
    pro = np.minimum(pro_sum / num_regions, 1.0)  # cumsum rounding must not overshoot 1
    return np.concatenate(([0.0], fpr)), np.concatenate(([0.0], pro))


def _area_up_to(x: np.ndarray, y: np.ndarray, x_max: float) -> float:
    """Trapezoid area under (x, y) for x in [0, x_max], x non-decreasing and ending at 1.

    Points with x <= x_max are kept as they are (vertical segments at x_max add nothing); the
    part between the last of them and the next point is closed with y linearly interpolated
    at x_max, as in MVTec AD's `trapezoid(..., x_max)`.
    """
    ins = int(np.searchsorted(x, x_max, side="right"))  # x[:ins] <= x_max < x[ins:]
    xs, ys = x[:ins], y[:ins]
    area = float(np.sum(0.5 * (ys[1:] + ys[:-1]) * np.diff(xs)))
    if ins < x.size and xs[-1] < x_max:
        x0, y0, x1, y1 = xs[-1], ys[-1], x[ins], y[ins]
        y_at_max = y0 + (y1 - y0) * (x_max - x0) / (x1 - x0)
        area += 0.5 * (y0 + y_at_max) * (x_max - x0)
    return float(area)
