"""Best achievable F1 over all decision thresholds.

F1-max answers "how good is the ranking if the threshold were chosen well", without committing
to a threshold. Exact: every distinct score is tried as a threshold (score >= t is defective),
via one sort and cumulative counts, so it also works on flattened 10^7-pixel maps.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ._core import (
    Ranking,
    as_binary,
    as_scores,
    check_same_shape,
    cumulative_counts,
    rank_descending,
)


def f1_max(scores: npt.ArrayLike, labels: npt.ArrayLike) -> float:
    """Maximum F1 over all thresholds. Any shape: per-image (N,) scores, or (N, H, W) maps
    against masks for pixel F1-max (flattened). 1/True = defective. NaN when no positives."""
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    check_same_shape(s, y, "scores", "labels")
    return _f1_max_ranked(y, rank_descending(s))


def _f1_max_ranked(labels: np.ndarray, ranking: Ranking) -> float:
    tp, fp = cumulative_counts(labels, ranking)
    return _f1_max_from_counts(tp, fp)


def _f1_max_from_counts(tp: np.ndarray, fp: np.ndarray) -> float:
    """F1 = 2TP / (2TP + FP + FN) = 2TP / (TP + FP + P), maximised over the thresholds."""
    num_pos = int(tp[-1])
    if num_pos == 0:
        return float("nan")
    f1 = 2.0 * tp / (tp + fp + num_pos)
    return float(f1.max())
