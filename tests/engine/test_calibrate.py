"""Thresholds at a stated false-alarm rate: the order-statistic rule against brute force and simulation."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError
from defectscope.data import build_datasets
from defectscope.engine.calibrate import calibrate
from defectscope.engine.checkpoint import load_checkpoint, save_checkpoint
from defectscope.engine.detector import Detector
from defectscope.engine.evaluate import results_markdown, threshold_rates
from defectscope.engine.predictions import Predictions, predict_dataset
from defectscope.engine.run import build_model
from defectscope.scoring.calibration import (
    Calibration,
    CalibrationWarning,
    HeldOut,
    ImageCalibration,
    Threshold,
    conformal_rank,
    conformal_threshold,
    min_samples,
)

ALPHAS = ("0.01", "0.05", "0.1", "0.2", "0.25", "0.5", "0.9")


@pytest.mark.parametrize("alpha", ALPHAS)
def test_rank_is_the_smallest_whose_exact_exceedance_is_within_alpha(alpha):
    """Brute force in exact fractions: P(new > k-th of n) = (n + 1 - k)/(n + 1); k is the first rank with that ≤ α."""
    exact = Fraction(alpha)  # the decimal the user wrote, without float noise
    for n in range(1, 400):
        ok = [k for k in range(1, n + 1) if Fraction(n + 1 - k, n + 1) <= exact]
        k = conformal_rank(n, float(alpha))
        if ok:
            assert k == ok[0], (n, alpha)
        else:
            assert k > n and n < min_samples(float(alpha)), (n, alpha)
    assert min_samples(0.01) == 99 and conformal_rank(99, 0.01) == 99 and conformal_rank(98, 0.01) == 99


def test_threshold_is_the_kth_smallest_score():
    scores = np.random.default_rng(0).normal(size=250)
    t = conformal_threshold(scores, 0.05)
    assert t.rank == math.ceil(251 * 0.95) == 239 and t.n == 250
    assert t.value == sorted(scores)[t.rank - 1]
    assert t.bound == pytest.approx((251 - 239) / 251) and t.bound <= 0.05 and not t.capped


@pytest.mark.parametrize(("n", "alpha"), [(199, 0.05), (99, 0.01), (40, 0.1), (30, 0.2)])
def test_new_normal_scores_exceed_the_threshold_at_most_at_the_stated_rate(n, alpha):
    """Exchangeable normals: over many calibration draws the exceedance averages (n+1-k)/(n+1) ≤ α.

    Deterministic (fixed seed); 3000 draws × 1000 new scores put the mean within ~0.001 of its
    expectation, so a rank one too low (exceedance 1/(n+1) higher) fails.
    """
    rng = np.random.default_rng(12345)
    draws, fresh = 3000, 1000
    calibration = rng.standard_normal((draws, n))
    k = conformal_rank(n, alpha)
    thresholds = np.partition(calibration, k - 1, axis=1)[:, k - 1]
    exceed = (rng.standard_normal((draws, fresh)) > thresholds[:, None]).mean()
    bound = (n + 1 - k) / (n + 1)
    assert bound <= alpha
    assert exceed <= alpha + 0.003
    assert abs(exceed - bound) < 0.003  # the promise is tight, not met by being conservative
    too_low = np.partition(calibration, k - 2, axis=1)[:, k - 2]
    assert (rng.standard_normal((draws, fresh)) > too_low[:, None]).mean() > bound + 1 / (n + 1) - 0.003


def test_too_few_held_out_scores_warn_and_fall_back_to_the_largest():
    scores = np.arange(50, dtype=float)
    with pytest.warns(CalibrationWarning, match=r"n = 50 .*0\.01 .*at least 99.*0\.01961 \(1/\(n\+1\)\)"):
        t = conformal_threshold(scores, 0.01)
    assert t.value == 49 and t.rank == 50 and t.capped and t.bound == pytest.approx(1 / 51)


@pytest.mark.parametrize("value", ["0", "1", "-0.1", "1.5"])
def test_rates_outside_zero_one_are_config_errors(tiny_config, value):
    for key in ("false_alarm_rate", "pixel_false_alarm_rate"):
        with pytest.raises(ConfigError, match=f"eval.{key}"):
            tiny_config(overrides=[f"--eval.{key}", value])


def test_calibration_fields_round_trip_through_a_checkpoint(tiny_config, tmp_path):
    cfg = tiny_config("ae_ssim", overrides=["--eval.false_alarm_rate", "0.3", "--eval.pixel_false_alarm_rate",
                                             "0.02", "--data.validation_fraction", "0.5"])
    torch.manual_seed(0)
    bundle = build_datasets(cfg.data)
    model = build_model(cfg, len(bundle.class_names))
    calibration, _, _ = calibrate(model, bundle.validation, cfg, torch.device("cpu"))
    preds = predict_dataset(model, bundle.validation, 8, torch.device("cpu"))
    n = len(preds.image_scores)
    k = math.ceil((n + 1) * 0.7)
    assert n >= 3 and k <= n
    image = calibration.image.threshold
    assert image.value == pytest.approx(sorted(preds.image_scores)[k - 1])
    assert (image.false_alarm_rate, image.n, image.rank) == (0.3, n, k)
    assert image.bound == pytest.approx((n + 1 - k) / (n + 1))
    assert calibration.image.held_out.scores == tuple(sorted(float(s) for s in preds.image_scores))
    pixels = np.sort(preds.maps.ravel())
    kp = math.ceil((pixels.size + 1) * 0.98)
    assert calibration.pixel.value == pytest.approx(pixels[kp - 1])
    assert calibration.pixel.rank == kp and calibration.pixel.false_alarm_rate == 0.02
    save_checkpoint(tmp_path / "ck", model, cfg, list(bundle.class_names), calibration)
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.calibration == calibration
    info = Detector(loaded).info()
    assert (info["false_alarm_rate"], info["false_alarm_bound"], info["held_out_normals"]) == (0.3, image.bound, n)
    assert info["pixel_false_alarm_rate"] == 0.02


def _calibration(value, classes=None):
    """A calibration whose pooled threshold is `value` (promise 0.0099 at 1 %, n = 100); `classes`: name → threshold."""
    def part(v):
        return ImageCalibration(Threshold(v, 0.01, 0.0099, 100, 100), HeldOut.of([0.3, 0.5, 0.7]))

    return Calibration(part(value), None, {k: part(v) for k, v in (classes or {}).items()})


def _preds(scores, labels, classes):
    n = len(scores)
    return Predictions(np.asarray(scores, float), np.zeros((n, 1, 1), np.float32), np.zeros((n, 1, 1), bool),
                       np.asarray(labels), np.asarray(classes), [f"{i}.png" for i in range(n)], 0.0)


def test_measured_rates_count_normals_flagged_and_defects_passed():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 2, 60)
    labels = rng.integers(0, 2, 60)
    classes = np.repeat([0, 1], 30)
    calibration = _calibration(1.0)
    rates = threshold_rates(_preds(scores, labels, classes), ["a", "b"], calibration)
    for c, name in enumerate(["a", "b"]):
        pick = classes == c
        fa = int(((scores > 1) & (labels == 0) & pick).sum())
        miss = int(((scores <= 1) & (labels == 1) & pick).sum())
        entry = rates["categories"][name]
        normals, defects = int(((labels == 0) & pick).sum()), int(((labels == 1) & pick).sum())
        assert (entry["false_alarms"]["count"], entry["false_alarms"]["total"]) == (fa, normals)
        assert (entry["misses"]["count"], entry["misses"]["total"]) == (miss, defects)
    mean_fa = np.mean([rates["categories"][n]["false_alarms"]["rate"] for n in ("a", "b")])
    assert rates["mean"]["false_alarm_rate"] == pytest.approx(mean_fa)
    assert rates["all"]["false_alarms"]["count"] == int(((scores > 1) & (labels == 0)).sum())
    assert rates["promised_false_alarm_rate"] == 0.01
    results = {"model": "m", "num_test_images": 60, "image_size": 32, "categories": {"a": {}, "b": {}}, "mean": {},
               "images_per_second": 1.0, "images_per_second_end_to_end": 1.0, "eval_batch_size": 8,
               "peak_rss_mib": 1.0, "environment": {"device_name": "cpu", "torch": "x", "commit": "c", "date": "d"},
               "thresholds": rates}
    text = results_markdown(results)
    entry = rates["categories"]["a"]["false_alarms"]
    row = [line for line in text.splitlines() if line.startswith("| a |")][-1]  # the thresholds table
    assert "promised vs measured" in text and f"| {entry['count']}/{entry['total']} (" in row
    caught = rates["categories"]["a"]["caught"]
    assert caught["count"] == int(((scores > 1) & (labels == 1) & (classes == 0)).sum())
    assert caught["interval"][0] <= caught["rate"] <= caught["interval"][1]
    assert threshold_rates(_preds(scores, labels, classes), ["a", "b"], None) is None


def test_a_score_at_the_threshold_is_not_a_false_alarm():
    calibration = _calibration(1.0)
    rates = threshold_rates(_preds([1.0, np.nextafter(1.0, 2)], [0, 0], [0, 0]), ["a"], calibration)
    assert rates["categories"]["a"]["false_alarms"]["count"] == 1


def test_a_class_with_its_own_threshold_is_judged_by_it():
    """Per-class calibration: each image is compared with its class's threshold, the pooled one is the fallback."""
    calibration = _calibration(1.0, {"b": 2.0})
    scores, labels, classes = [1.5, 1.5, 2.5], [0, 0, 0], [0, 1, 1]
    rates = threshold_rates(_preds(scores, labels, classes), ["a", "b"], calibration)
    assert rates["categories"]["a"]["false_alarms"]["count"] == 1
    assert rates["categories"]["b"]["false_alarms"]["count"] == 1  # 1.5 passes b's 2.0, 2.5 does not


def test_the_calibration_round_trips_and_rethresholds_from_its_held_out_scores():
    scores = np.random.default_rng(1).normal(size=300)
    calibration = Calibration.fit(scores, 0.05, scores[:50], 0.1)
    assert Calibration.from_json(calibration.to_json()) == calibration
    again = calibration.at_rate(0.01)
    assert again.image.threshold == conformal_threshold(scores, 0.01)
    assert again.pixel == calibration.pixel and again.image.held_out == calibration.image.held_out
    assert Calibration.from_json("{}") is None


@pytest.mark.parametrize(("text", "message"), [
    ('{"image": 3}', r"calibration.image must be a JSON object"),
    ('{"image": {"threshold": {"value": 1, "false_alarm_rate": 0.01, "bound": 0.01, "n": 99, "rank": 99}, '
     '"held_out_scores": ["x"]}}', r"held_out_scores must be a list of finite numbers"),
    ('{"image": {"threshold": {"value": 1, "false_alarm_rate": 2, "bound": 0.01, "n": 99, "rank": 99}, '
     '"held_out_scores": []}}', r"calibration.image.threshold.false_alarm_rate must lie in \(0, 1\)"),
    ('{"image": {"threshold": {"value": 1, "false_alarm_rate": 0.1, "bound": 0.01, "n": 0, "rank": 99}, '
     '"held_out_scores": []}}', r"calibration.image.threshold.n must be a positive integer"),
    ('{"pixels": 1}', r"unknown keys \['pixels'\]"),
])
def test_a_malformed_calibration_names_its_key(text, message):
    from defectscope.scoring.calibration import CalibrationError

    with pytest.raises(CalibrationError, match=message):
        Calibration.from_json(text)


def test_held_out_scores_list_highest_first_with_a_failed_score_on_top(tmp_path):
    import csv as csv_module

    import numpy as np

    from defectscope.engine.calibrate import HeldOutScores

    parts = [HeldOutScores(["a", "b"], ["x", "x"], np.array([1.0, 3.0])),
             HeldOutScores(["c", "d"], ["y", "x"], np.array([float("nan"), 2.0]))]
    joined = HeldOutScores.join(parts)
    assert [p for p, _, _ in joined.highest(3)] == ["c", "b", "d"]
    joined.write(tmp_path / "held.csv")
    with (tmp_path / "held.csv").open(newline="") as f:
        rows = list(csv_module.DictReader(f))
    assert [(r["rank"], r["path"], r["class"]) for r in rows] == [("1", "c", "y"), ("2", "b", "x"), ("3", "d", "x"),
                                                                 ("4", "a", "x")]
