"""Shared input checks and the one descending sort that every threshold-sweeping metric needs.

Every metric here is a sweep over "predict defective when score >= t" for all distinct t. Sorting
the scores once, descending, and marking where each run of tied scores ends gives the state at
every threshold from cumulative sums, with no Python loop over thresholds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


def as_scores(x: npt.ArrayLike, name: str) -> np.ndarray:
    """float64 copy/view of `x`; refuses empty input and NaN (which has no place in a ranking)."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be numeric, could not convert: {err}") from err
    if a.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(a).any():
        raise ValueError(f"{name} contains NaN ({int(np.isnan(a).sum())} values)")
    return a


def as_binary(x: npt.ArrayLike, name: str) -> np.ndarray:
    """bool array from bool or 0/1 input.

    Anything else is refused rather than thresholded: a mask with 0.5s in it (e.g. resized with
    bilinear interpolation) would otherwise silently become "defective" everywhere it is non-zero.
    """
    a = np.asarray(x)
    if a.dtype == np.bool_:
        return a
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ValueError(f"{name} must be bool or 0/1 numbers, got dtype {a.dtype}")
    binary = (a == 0) | (a == 1)
    if not binary.all():
        bad = np.unique(a[~binary])[:5]
        raise ValueError(f"{name} must contain only 0 and 1 (or bool); found e.g. {bad.tolist()}")
    return a != 0


def check_same_shape(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name_a} {a.shape} and {name_b} {b.shape} must have the same shape")


def check_ndim(a: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {layout}, got shape {a.shape}")


@dataclass(frozen=True)
class Ranking:
    """Flat scores sorted descending, with the end of every run of tied scores marked.

    order: indices into the flat scores, highest score first.
    run_ends: positions in that order of the last element of each tie run; the state "after
        run k" is the prediction for threshold t = that run's score (score >= t).
    """

    order: np.ndarray
    run_ends: np.ndarray


def rank_descending(scores: np.ndarray) -> Ranking:
    """One argsort of all scores; ties are kept together so they can be collapsed to one point."""
    flat = scores.ravel()
    order = np.argsort(flat)[::-1]
    ranked = flat[order]
    run_ends = np.flatnonzero(ranked[1:] != ranked[:-1])
    run_ends = np.append(run_ends, ranked.size - 1)
    return Ranking(order=order, run_ends=run_ends)


def cumulative_counts(labels: np.ndarray, ranking: Ranking) -> tuple[np.ndarray, np.ndarray]:
    """(true positives, false positives) at each distinct threshold, highest first, as int64."""
    tp = np.cumsum(labels.ravel()[ranking.order], dtype=np.int64)[ranking.run_ends]
    fp = ranking.run_ends + 1 - tp
    return tp, fp
