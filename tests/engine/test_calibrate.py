"""Thresholds at a stated false-alarm rate: the order-statistic rule against brute force and simulation."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError
from defectscope.data import build_datasets
from defectscope.engine.calibrate import (
    CalibrationWarning,
    calibrate,
    conformal_rank,
    conformal_threshold,
    min_samples,
)
from defectscope.engine.checkpoint import load_checkpoint, save_checkpoint
from defectscope.engine.detector import Detector
from defectscope.engine.evaluate import results_markdown, threshold_rates
from defectscope.engine.predictions import Predictions, predict_dataset
from defectscope.engine.run import build_model

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
    assert t.k == math.ceil(251 * 0.95) == 239 and t.n == 250
    assert t.threshold == sorted(scores)[t.k - 1]
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
    assert t.threshold == 49 and t.k == 50 and t.capped and t.bound == pytest.approx(1 / 51)


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
    calibration, _ = calibrate(model, bundle.validation, cfg, torch.device("cpu"))
    preds = predict_dataset(model, bundle.validation, 8, torch.device("cpu"))
    n = len(preds.image_scores)
    k = math.ceil((n + 1) * 0.7)
    assert n >= 3 and k <= n
    assert calibration["image_threshold"] == pytest.approx(sorted(preds.image_scores)[k - 1])
    assert (calibration["image_false_alarm_rate"], calibration["image_threshold_n"],
            calibration["image_threshold_rank"]) == (0.3, n, k)
    assert calibration["image_false_alarm_bound"] == pytest.approx((n + 1 - k) / (n + 1))
    pixels = np.sort(preds.maps.ravel())
    kp = math.ceil((pixels.size + 1) * 0.98)
    assert calibration["pixel_threshold"] == pytest.approx(pixels[kp - 1])
    assert calibration["pixel_threshold_rank"] == kp and calibration["pixel_false_alarm_rate"] == 0.02
    save_checkpoint(tmp_path / "ck", model, cfg, list(bundle.class_names), calibration)
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.calibration == calibration
    info = Detector(loaded).info()
    assert info["image_false_alarm_rate"] == 0.3 and info["pixel_false_alarm_rate"] == 0.02


def _preds(scores, labels, classes):
    n = len(scores)
    return Predictions(np.asarray(scores, float), np.zeros((n, 1, 1), np.float32), np.zeros((n, 1, 1), bool),
                       np.asarray(labels), np.asarray(classes), [f"{i}.png" for i in range(n)], 0.0)


def test_measured_rates_count_normals_flagged_and_defects_passed():
    rng = np.random.default_rng(3)
    scores = rng.uniform(0, 2, 60)
    labels = rng.integers(0, 2, 60)
    classes = np.repeat([0, 1], 30)
    calibration = {"image_threshold": 1.0, "image_score_mean": 0.5, "image_score_std": 0.2,
                   "image_false_alarm_rate": 0.01, "image_false_alarm_bound": 0.0099, "image_threshold_n": 100,
                   "image_threshold_rank": 100}
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
    assert "promised vs measured" in text and f"| a | {entry['count']}/{entry['total']} (" in text
    assert threshold_rates(_preds(scores, labels, classes), ["a", "b"], {}) is None


def test_a_score_at_the_threshold_is_not_a_false_alarm():
    calibration = {"image_threshold": 1.0, "image_score_mean": 0.5, "image_score_std": 0.2}
    rates = threshold_rates(_preds([1.0, np.nextafter(1.0, 2)], [0, 0], [0, 0]), ["a"], calibration)
    assert rates["categories"]["a"]["false_alarms"]["count"] == 1
