"""Thresholds and the map standardiser, fitted on held-out *normal* training images only."""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from torch.utils.data import Dataset

from defectscope.config import RunConfig
from defectscope.engine.predictions import predict_dataset
from defectscope.engine.standardize import MapStandardizer, require_held_out_images
from defectscope.models.base import AnomalyModel, ModelOutput


def calibrate(
    model: AnomalyModel, validation: Dataset, cfg: RunConfig, device: torch.device, num_classes: int = 1
) -> tuple[dict[str, float], MapStandardizer | None]:
    """Thresholds (and the map standardiser, if configured) from held-out normal images.

    image_threshold is the largest validation image score (no held-out normal image is
    flagged); pixel_threshold is the 99.9th percentile of validation pixel scores, used to
    scale heatmaps for display. Both are taken after standardisation when it is on.
    """
    require_held_out_images(cfg.eval.map_standardization, len(validation))
    if len(validation) == 0:
        return {}, None
    preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device)
    standardizer = None
    if cfg.eval.map_standardization == "position":
        standardizer = MapStandardizer.fit(preds.maps, preds.class_ids, num_classes)
        z = standardizer(ModelOutput(torch.from_numpy(preds.maps), torch.from_numpy(preds.image_scores)),
                         torch.from_numpy(preds.class_ids))
        preds = dataclasses.replace(preds, maps=z.anomaly_map.numpy(), image_scores=z.image_score.numpy())
    calibration = {
        "image_threshold": float(preds.image_scores.max()),
        "image_score_mean": float(preds.image_scores.mean()),
        "image_score_std": float(preds.image_scores.std()),
        "pixel_threshold": float(np.quantile(preds.maps, 0.999)),
        "num_validation_images": len(validation),
    }
    return calibration, standardizer
