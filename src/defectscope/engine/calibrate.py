"""The calibration of a run, fitted on held-out *normal* training images only (never on test labels).

The rule and the promise it carries: `defectscope.scoring.calibration`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

from defectscope.config import RunConfig
from defectscope.engine.inference import viewing_of
from defectscope.engine.predictions import predict_dataset
from defectscope.engine.standardize import require_held_out_images
from defectscope.models.base import AnomalyModel
from defectscope.scoring.calibration import Calibration
from defectscope.scoring.path import MapStandardizer


def calibrate(
    model: AnomalyModel, validation: Dataset, cfg: RunConfig, device: torch.device, class_names: Sequence[str] = ()
) -> tuple[Calibration | None, MapStandardizer | None]:
    """Thresholds (and the map standardiser, if configured) from held-out normal images.

    The image threshold promises eval.false_alarm_rate over held-out image scores; the pixel
    threshold promises eval.pixel_false_alarm_rate over all held-out pixels (it colours heatmaps
    and decides defect_area). Both are taken after standardisation when it is on.
    """
    require_held_out_images(cfg.eval.map_standardization, len(validation))
    if len(validation) == 0:
        return None, None
    viewing = viewing_of(cfg.data)
    preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device, viewing=viewing)
    standardizer = None
    if cfg.eval.map_standardization == "position":
        standardizer = MapStandardizer.fit(preds.maps, preds.class_ids, max(1, len(class_names)))
        preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device, viewing=viewing,
                                standardizer=standardizer)
    calibration = Calibration.fit(preds.image_scores, cfg.eval.false_alarm_rate, preds.pixels()[0],
                                  cfg.eval.pixel_false_alarm_rate, preds.class_ids, class_names)
    return calibration, standardizer
