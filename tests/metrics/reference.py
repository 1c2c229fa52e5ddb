"""Slow, deliberately naive reference implementations of the metrics, straight from definitions.

Written independently of defectscope.metrics (no sorting tricks, no cumulative sums, no scipy
labelling) so that agreement between the two means something. Only for small inputs.
"""

from __future__ import annotations

import numpy as np


def auroc_reference(scores, labels) -> float:
    """Mann-Whitney: P(score of a random positive > score of a random negative), ties count 1/2."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    positives = scores[labels].tolist()  # plain floats: the double loop stays fast enough
    negatives = scores[~labels].tolist()
    if len(positives) == 0 or len(negatives) == 0:
        return float("nan")
    wins = 0.0
    for p in positives:
        for n in negatives:
            if p > n:
                wins += 1.0
            elif p == n:
                wins += 0.5
    return wins / (len(positives) * len(negatives))


def f1_max_reference(scores, labels) -> float:
    """Try every distinct score t as the threshold (score >= t is positive); keep the best F1."""
    scores = np.asarray(scores, dtype=np.float64).ravel()
    labels = np.asarray(labels).astype(bool).ravel()
    if not labels.any():
        return float("nan")
    best = 0.0
    for t in np.unique(scores):
        predicted = scores >= t
        tp = np.sum(predicted & labels)
        fp = np.sum(predicted & ~labels)
        fn = np.sum(~predicted & labels)
        if tp == 0:
            f1 = 0.0
        else:
            precision = tp / (tp + fp)
            recall = tp / (tp + fn)
            f1 = 2 * precision * recall / (precision + recall)
        best = max(best, f1)
    return best


def connected_regions(mask, connectivity: int = 8) -> list[list[tuple[int, int]]]:
    """Connected components of a 2-D bool mask by flood fill; each is a list of (row, col)."""
    mask = np.asarray(mask).astype(bool)
    height, width = mask.shape
    if connectivity == 8:
        steps = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    elif connectivity == 4:
        steps = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    else:
        raise ValueError(connectivity)
    seen = np.zeros_like(mask)
    regions = []
    for y in range(height):
        for x in range(width):
            if not mask[y, x] or seen[y, x]:
                continue
            region = []
            stack = [(y, x)]
            seen[y, x] = True
            while stack:
                cy, cx = stack.pop()
                region.append((cy, cx))
                for dy, dx in steps:
                    ny, nx = cy + dy, cx + dx
                    inside = 0 <= ny < height and 0 <= nx < width
                    if inside and mask[ny, nx] and not seen[ny, nx]:
                        seen[ny, nx] = True
                        stack.append((ny, nx))
            regions.append(region)
    return regions


def pro_curve_reference(maps, masks, connectivity: int = 8) -> list[tuple[float, float]]:
    """(FPR, PRO) points: (0, 0), then one per distinct score t, from the highest t down.

    FPR(t): fraction of all defect-free pixels (of all images) with score >= t.
    PRO(t): mean over all ground-truth regions (of all images) of the fraction of the region's
    pixels with score >= t.
    """
    maps = np.asarray(maps, dtype=np.float64)
    masks = np.asarray(masks).astype(bool)
    region_scores = []  # one array of pixel scores per region
    for i in range(len(masks)):
        for region in connected_regions(masks[i], connectivity):
            region_scores.append(np.array([maps[i, y, x] for y, x in region]))
    normal_scores = maps[~masks]
    points = [(0.0, 0.0)]
    for t in sorted(np.unique(maps), reverse=True):
        fpr = np.sum(normal_scores >= t) / len(normal_scores)
        overlaps = [np.sum(r >= t) / len(r) for r in region_scores]
        points.append((float(fpr), float(np.mean(overlaps))))
    return points


def area_reference(points: list[tuple[float, float]], fpr_limit: float) -> float:
    """Trapezoid area under the points up to x = fpr_limit (y interpolated there), / fpr_limit."""
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        if x1 <= fpr_limit:
            area += (x1 - x0) * (y0 + y1) / 2
        else:  # this segment crosses fpr_limit: take the part left of it and stop
            y_at_limit = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            area += (fpr_limit - x0) * (y0 + y_at_limit) / 2
            break
    return area / fpr_limit


def aupro_reference(maps, masks, fpr_limit: float = 0.3, connectivity: int = 8) -> float:
    masks = np.asarray(masks).astype(bool)
    if not masks.any() or masks.all():
        return float("nan")
    return area_reference(pro_curve_reference(maps, masks, connectivity), fpr_limit)


def stratified_bootstrap_reference(values, defective, metric, resamples: int, seed: int, confidence: float = 0.95):
    """Percentile interval of `metric` over resamples built one at a time by gathering the items.

    values: a list of per-image items (a score, or a (map, mask) pair); defective: (N,) bool.
    Draws follow the documented protocol (normal images' index matrix, then the defective
    images'), but each resample is materialised and scored from scratch: no counts, no bins.
    """
    defective = np.asarray(defective, dtype=bool)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(~defective), np.flatnonzero(defective)]
    draws = [rng.integers(0, len(s), size=(resamples, len(s))) if len(s) else None for s in strata]
    results = []
    for r in range(resamples):
        chosen = []
        for stratum, d in zip(strata, draws, strict=True):
            if d is not None:
                chosen.extend(int(stratum[j]) for j in d[r])
        results.append(metric([values[i] for i in chosen]))
    tail = (1 - confidence) / 2
    low, high = np.quantile(results, [tail, 1 - tail])
    return float(low), float(high)
