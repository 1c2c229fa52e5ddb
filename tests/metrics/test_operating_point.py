"""Catch rate at a false-alarm rate against brute force over every threshold; the binomial interval against scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from defectscope.metrics.operating_point import binomial_interval, catch_rate_at, catch_rate_interval, catch_rate_key


def brute_force(scores: np.ndarray, labels: np.ndarray, rate: float) -> float:
    """Try every threshold (each score, and below them all): best share of defects above it among the
    thresholds that flag at most ⌊rate · normals⌋ normal images."""
    normal, defective = scores[labels == 0], scores[labels == 1]
    allowed = math.floor(round(rate * len(normal), 9))
    best = 0.0
    for t in np.concatenate([scores, [scores.min() - 1]]):
        if (normal > t).sum() <= allowed:
            best = max(best, float((defective > t).mean()))
    return best


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.booleans()), min_size=2, max_size=60),
       st.sampled_from([0.0, 0.01, 0.05, 0.1, 0.3]))
def test_matches_brute_force_with_ties(pairs, rate):
    scores = np.array([float(s) for s, _ in pairs])
    labels = np.array([int(d) for _, d in pairs])
    if labels.all() or not labels.any():
        assert math.isnan(catch_rate_at(scores, labels, rate))
        return
    assert catch_rate_at(scores, labels, rate) == pytest.approx(brute_force(scores, labels, rate))


def test_one_normal_above_every_defect_costs_everything_at_zero_false_alarms():
    scores = np.array([0.1, 0.2, 5.0, 1.0, 2.0, 3.0])
    labels = np.array([0, 0, 0, 1, 1, 1])
    assert catch_rate_at(scores, labels, 0.0) == 0.0
    assert catch_rate_at(scores, labels, 1 / 3) == 1.0  # one of three normals may be flagged


def test_the_interval_brackets_the_value_and_narrows_with_more_images():
    rng = np.random.default_rng(0)

    def draw(n):
        return np.concatenate([rng.normal(0, 1, n), rng.normal(2, 1, n)]), np.repeat([0, 1], n)

    small, large = draw(40), draw(400)
    lo_s, hi_s = catch_rate_interval(*small, 0.05, resamples=300)
    lo_l, hi_l = catch_rate_interval(*large, 0.05, resamples=300)
    assert lo_s <= catch_rate_at(*small, 0.05) <= hi_s
    assert lo_l <= catch_rate_at(*large, 0.05) <= hi_l
    assert hi_l - lo_l < hi_s - lo_s


def test_binomial_interval_is_clopper_pearson():
    from scipy.stats import binomtest

    for count, total in [(0, 20), (3, 69), (20, 20), (12, 69)]:
        expected = binomtest(count, total).proportion_ci(0.95, method="exact")
        assert binomial_interval(count, total) == pytest.approx((expected.low, expected.high))
    assert all(math.isnan(v) for v in binomial_interval(0, 0))


def test_keys_name_the_rate():
    assert (catch_rate_key(0.01), catch_rate_key(0.05), catch_rate_key(0.005)) == ("catch_1pct", "catch_5pct",
                                                                                   "catch_0_5pct")
