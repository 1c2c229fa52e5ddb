"""Thresholds and the map standardiser, fitted on held-out *normal* training images only.

Both thresholds follow the conformal (order-statistic) rule: with n held-out normal scores and a
stated false-alarm rate α, the threshold is the k-th smallest score, k = ⌈(n + 1)(1 − α)⌉. If a
new normal image is exchangeable with the held-out ones, its rank among the n + 1 scores is
uniform, so P(new score > threshold) = (n + 1 − k) / (n + 1) ≤ α (less with ties). When
k > n, no held-out score is high enough: the largest is used, which promises only 1 / (n + 1),
and a CalibrationWarning says so. The promise is about images like the held-out ones; normal
images that differ from them (another lot, lighting, camera) can exceed it.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from defectscope.config import RunConfig
from defectscope.engine.inference import Viewing
from defectscope.engine.predictions import predict_dataset
from defectscope.engine.standardize import MapStandardizer, require_held_out_images
from defectscope.models.base import AnomalyModel, ModelOutput


class CalibrationWarning(UserWarning):
    """Too few held-out normal scores for the stated false-alarm rate."""


@dataclass(frozen=True)
class ConformalThreshold:
    """A threshold with the false-alarm promise it carries."""

    threshold: float
    alpha: float  # the stated false-alarm rate
    n: int  # held-out normal scores it was chosen from
    k: int  # 1-based rank of the threshold among them
    bound: float  # achieved guarantee: P(new normal score > threshold) ≤ (n + 1 − k) / (n + 1)

    @property
    def capped(self) -> bool:
        """True when n was too small for alpha and the largest score stands in."""
        return self.bound > self.alpha


def conformal_rank(n: int, alpha: float) -> int:
    """k = ⌈(n + 1)(1 − α)⌉, the rank whose score a new normal one exceeds with probability ≤ α.

    Rounded to 9 decimals first so that float noise in (n + 1)(1 − α) (e.g. 100 × 0.99) cannot
    move k up by one; may exceed n.
    """
    if not 0 < alpha < 1:
        raise ValueError(f"false-alarm rate must lie strictly between 0 and 1, got {alpha}")
    if n < 1:
        raise ValueError("no held-out normal scores to set a threshold from")
    return max(1, math.ceil(round((n + 1) * (1 - alpha), 9)))


def min_samples(alpha: float) -> int:
    """The fewest held-out scores for which the rule reaches alpha: n ≥ 1/α − 1."""
    return max(1, math.ceil(round(1 / alpha - 1, 9)))


def conformal_threshold(scores: np.ndarray, alpha: float, what: str = "image") -> ConformalThreshold:
    """The k-th smallest of `scores` (k = conformal_rank); warns naming n, α and 1/(n + 1) when k > n."""
    flat = np.asarray(scores, dtype=np.float64).ravel()
    n = flat.size
    k = conformal_rank(n, alpha)
    if k > n:
        warnings.warn(
            f"n = {n} held-out normal {what} scores cannot promise a false-alarm rate of {alpha:g} "
            f"(that needs at least {min_samples(alpha)}); the {what} threshold is their largest score, "
            f"which promises {1 / (n + 1):.4g} (1/(n+1)). Hold out more normal images "
            f"(data.validation_fraction) or state a rate of at least {1 / (n + 1):.4g}",
            CalibrationWarning,
            stacklevel=2,
        )
        k = n
    value = float(np.partition(flat, k - 1)[k - 1])
    return ConformalThreshold(threshold=value, alpha=alpha, n=n, k=k, bound=(n + 1 - k) / (n + 1))


def threshold_fields(prefix: str, t: ConformalThreshold) -> dict[str, Any]:
    """How a threshold and its promise are stored in the calibration (flat, JSON in the checkpoint)."""
    return {
        f"{prefix}_threshold": t.threshold,
        f"{prefix}_false_alarm_rate": t.alpha,
        f"{prefix}_false_alarm_bound": t.bound,
        f"{prefix}_threshold_n": t.n,
        f"{prefix}_threshold_rank": t.k,
    }


def calibrate(
    model: AnomalyModel, validation: Dataset, cfg: RunConfig, device: torch.device, num_classes: int = 1
) -> tuple[dict[str, Any], MapStandardizer | None]:
    """Thresholds (and the map standardiser, if configured) from held-out normal images.

    image_threshold promises eval.false_alarm_rate over held-out image scores; pixel_threshold
    promises eval.pixel_false_alarm_rate over all held-out pixels (it colours heatmaps and
    decides defect_area). Pixels of one image are not independent of each other, so the pixel
    promise is about the expected share of a normal image's pixels above it, not a guarantee in
    the image sense. Both are taken after standardisation when it is on.
    """
    require_held_out_images(cfg.eval.map_standardization, len(validation))
    if len(validation) == 0:
        return {}, None
    preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device, viewing=Viewing.of(cfg.data))
    standardizer = None
    if cfg.eval.map_standardization == "position":
        standardizer = MapStandardizer.fit(preds.maps, preds.class_ids, num_classes)
        z = standardizer(ModelOutput(torch.from_numpy(preds.maps), torch.from_numpy(preds.image_scores)),
                         torch.from_numpy(preds.class_ids))
        preds = dataclasses.replace(preds, maps=z.anomaly_map.numpy(), image_scores=z.image_score.numpy())
    image = conformal_threshold(preds.image_scores, cfg.eval.false_alarm_rate, "image")
    pixel = conformal_threshold(preds.pixels()[0], cfg.eval.pixel_false_alarm_rate, "pixel")
    calibration = {
        **threshold_fields("image", image),
        "image_score_mean": float(preds.image_scores.mean()),
        "image_score_std": float(preds.image_scores.std()),
        **threshold_fields("pixel", pixel),
        "num_validation_images": len(validation),
    }
    return calibration, standardizer
