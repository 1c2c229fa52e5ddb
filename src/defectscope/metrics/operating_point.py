"""The operating point: how many defects a line catches while flagging at most a share of good parts.

AUROC averages over every threshold; a line runs at one. Two views of it:

- threshold-free, on the test ROC: `catch_rate_at(scores, labels, rate)` is the largest share of
  defective images scored above a threshold that flags at most `rate` of the normal test images
  (the best any threshold could do on this test set at that false-alarm rate);
- at a threshold fixed beforehand (the calibrated one): counts of flagged images, with exact
  (Clopper–Pearson) binomial intervals, since the threshold does not depend on the test images.

Intervals of the threshold-free rate come from the stratified bootstrap over images, with the
draw protocol of `defectscope.metrics.bootstrap`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.stats import beta

from ._core import as_binary, as_scores, check_ndim, check_same_shape
from .bootstrap import NAN_INTERVAL, _check_options, _percentiles

__all__ = ["OPERATING_RATES", "binomial_interval", "catch_rate_at", "catch_rate_interval", "catch_rate_key"]

# the false-alarm rates every evaluation reports the catch rate at: a line's usual promise, and a looser one
OPERATING_RATES = (0.01, 0.05)


def catch_rate_key(rate: float) -> str:
    """`catch_1pct`: the results key of the catch rate at a false-alarm rate."""
    return f"catch_{rate * 100:g}pct".replace(".", "_")


def _inputs(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    check_ndim(s, 1, "scores", "(N,) one score per image")
    check_same_shape(s, y, "scores", "labels")
    return s, y


def _check_rate(rate: float) -> None:
    if not 0 <= rate < 1:
        raise ValueError(f"false-alarm rate must lie in [0, 1), got {rate}")


def _threshold(normal_sorted: np.ndarray, rate: float) -> np.ndarray:
    """Per row of sorted normal scores: the lowest threshold with at most ⌊rate·n⌋ of them strictly above."""
    n = normal_sorted.shape[-1]
    allowed = math.floor(round(rate * n, 9))
    return normal_sorted[..., n - allowed - 1]


def catch_rate_at(scores: npt.ArrayLike, labels: npt.ArrayLike, rate: float) -> float:
    """Share of defective images (label 1) above the lowest threshold that flags at most `rate` of the
    normal ones (label 0), a score above the threshold being flagged; NaN without both kinds."""
    s, y = _inputs(scores, labels)
    _check_rate(rate)
    if y.all() or not y.any():
        return float("nan")
    threshold = _threshold(np.sort(s[~y]), rate)
    return float((s[y] > threshold).mean())


def catch_rate_interval(scores: npt.ArrayLike, labels: npt.ArrayLike, rate: float, *, resamples: int = 1000,
                        confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """(low, high) of `catch_rate_at` over stratified bootstrap resamples of the images."""
    s, y = _inputs(scores, labels)
    _check_rate(rate)
    _check_options(resamples, confidence)
    if y.all() or not y.any():
        return NAN_INTERVAL
    rng = np.random.default_rng(seed)
    normal, defective = s[~y], s[y]
    drawn_normal = normal[rng.integers(0, len(normal), size=(resamples, len(normal)))]
    drawn_defective = defective[rng.integers(0, len(defective), size=(resamples, len(defective)))]
    thresholds = _threshold(np.sort(drawn_normal, axis=1), rate)
    return _percentiles((drawn_defective > thresholds[:, None]).mean(axis=1), confidence)


def binomial_interval(count: int, total: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper–Pearson) interval of a rate seen as `count` of `total` independent trials."""
    if total <= 0:
        return NAN_INTERVAL
    tail = (1 - confidence) / 2
    low = 0.0 if count == 0 else float(beta.ppf(tail, count, total - count + 1))
    high = 1.0 if count == total else float(beta.ppf(1 - tail, count + 1, total - count))
    return low, high
