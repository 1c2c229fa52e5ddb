"""The typed calibration: per-class thresholds, moving a threshold by rate or by score, and its promise."""

from __future__ import annotations

import numpy as np
import pytest

from defectscope.scoring.calibration import Calibration, HeldOut, conformal_threshold


def test_each_class_gets_its_own_threshold_from_its_own_scores():
    rng = np.random.default_rng(0)
    low, high = rng.normal(0, 1, 200), rng.normal(10, 1, 150)
    scores, ids = np.concatenate([low, high]), np.repeat([0, 1], [200, 150])
    calibration = Calibration.fit(scores, 0.05, class_ids=ids, class_names=["low", "high"])
    assert calibration.for_class("low").threshold == conformal_threshold(low, 0.05)
    assert calibration.for_class("high").threshold == conformal_threshold(high, 0.05)
    assert calibration.for_class("unknown") == calibration.image  # the pooled one stands in
    assert calibration.image.threshold == conformal_threshold(scores, 0.05)
    # one pooled threshold keeps the 5 % only on average: twice that for the high class, none for the low one
    pooled = calibration.image.threshold.value
    assert (high > pooled).mean() > 0.1 and (low > pooled).mean() == 0
    moved = calibration.at_rate(0.2)
    assert moved.for_class("high").threshold == conformal_threshold(high, 0.2)
    assert Calibration.from_json(moved.to_json()) == moved


def test_a_named_score_gets_the_promise_of_its_rank():
    held = HeldOut.of(np.arange(1.0, 100.0))  # 99 scores 1 … 99
    t = held.threshold_at(95.0)
    assert (t.rank, t.n) == (95, 99) and t.bound == pytest.approx(5 / 100) and t.false_alarm_rate == t.bound
    assert held.threshold_at(1000.0).bound == pytest.approx(1 / 100)
    with pytest.raises(ValueError, match="below every one of the 99 held-out normal scores"):
        held.threshold_at(0.5)


def test_a_score_threshold_on_a_per_class_model_needs_the_class():
    calibration = Calibration.fit(np.arange(20.0), 0.1, class_ids=np.repeat([0, 1], 10), class_names=["a", "b"])
    with pytest.raises(ValueError, match="threshold per class"):
        calibration.at_score(5.0)
    moved = calibration.at_score(15.5, "b")
    assert moved.for_class("b").threshold.value == 15.5 and moved.for_class("a") == calibration.for_class("a")
