"""Calibrations for tests that need one without fitting it on a dataset."""

from __future__ import annotations

import numpy as np

from defectscope.scoring.calibration import Calibration, HeldOut, ImageCalibration, Threshold, conformal_threshold


def held_out_calibration(scores: np.ndarray, maps: np.ndarray, pixel_rate: float) -> Calibration:
    """The calibration `engine.calibrate` would fit on these held-out scores and maps: with a handful of
    images the image threshold is their largest score (promise 1/(n + 1)); the pixel one at `pixel_rate`."""
    n = len(scores)
    image = ImageCalibration(Threshold(float(scores.max()), 1 / (n + 1), 1 / (n + 1), n, n), HeldOut.of(scores))
    return Calibration(image, conformal_threshold(maps, pixel_rate, "pixel"))


def threshold_at(value: float) -> Calibration:
    """An image threshold of exactly `value`: the larger of two held-out scores at a stated rate of 1/2."""
    return Calibration.fit(np.array([value / 2, value]), 0.5)
