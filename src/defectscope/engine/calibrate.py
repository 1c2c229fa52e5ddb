"""The calibration of a run, fitted on held-out *normal* training images only (never on test labels).

The rule and the promise it carries: `defectscope.scoring.calibration`.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from defectscope.config import RunConfig
from defectscope.engine.files import write_text_atomic
from defectscope.engine.inference import viewing_of
from defectscope.engine.predictions import Predictions, predict_dataset
from defectscope.engine.standardize import require_held_out_images
from defectscope.models.base import AnomalyModel
from defectscope.scoring.calibration import Calibration
from defectscope.scoring.path import MapStandardizer

HELD_OUT_SCORES = "held_out_scores.csv"  # in a run folder: the scores behind its image threshold


@dataclass(frozen=True)
class HeldOutScores:
    """Each held-out normal image's score as the calibration saw it.

    The highest of them set the image threshold (at n = 762 and 1 %, the 6 highest of 762 decide
    it), so one defective part filed among the good ones raises it for every part: a user should
    be able to see which parts those are and look at them.
    """

    paths: list[str]
    classes: list[str]
    scores: np.ndarray

    @classmethod
    def of(cls, preds: Predictions, class_names: Sequence[str]) -> HeldOutScores:
        names = list(class_names) or ["all"]
        return cls(list(preds.paths), [names[int(i)] for i in preds.class_ids], np.asarray(preds.image_scores))

    @classmethod
    def join(cls, parts: Sequence[HeldOutScores]) -> HeldOutScores:
        return cls([p for part in parts for p in part.paths], [c for part in parts for c in part.classes],
                   np.concatenate([part.scores for part in parts]) if parts else np.zeros(0))

    def highest(self, count: int) -> list[tuple[str, str, float]]:
        """(path, class, score) of the `count` highest-scoring images, highest first (NaN first: it is a failure)."""
        order = np.argsort(-np.nan_to_num(self.scores, nan=np.inf), kind="stable")[:count]
        return [(self.paths[i], self.classes[i], float(self.scores[i])) for i in order]

    def write(self, path: Path) -> None:
        """A CSV, highest score first, written atomically."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["rank", "path", "class", "score"])
        for rank, (image, name, score) in enumerate(self.highest(len(self.paths)), 1):
            writer.writerow([rank, image, name, f"{score:.6g}"])
        write_text_atomic(path, buffer.getvalue())


def calibrate(
    model: AnomalyModel, validation: Dataset, cfg: RunConfig, device: torch.device, class_names: Sequence[str] = ()
) -> tuple[Calibration | None, MapStandardizer | None, HeldOutScores | None]:
    """Thresholds (and the map standardiser, if configured) from held-out normal images.

    The image threshold promises eval.false_alarm_rate over held-out image scores; the pixel
    threshold promises eval.pixel_false_alarm_rate over all held-out pixels (it colours heatmaps
    and decides defect_area). Both are taken after standardisation when it is on.
    """
    require_held_out_images(cfg.eval.map_standardization, len(validation))
    if len(validation) == 0:
        return None, None, None
    viewing = viewing_of(cfg.data)
    preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device, viewing=viewing)
    standardizer = None
    if cfg.eval.map_standardization == "position":
        standardizer = MapStandardizer.fit(preds.maps, preds.class_ids, max(1, len(class_names)))
        preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device, viewing=viewing,
                                standardizer=standardizer)
    calibration = Calibration.fit(preds.image_scores, cfg.eval.false_alarm_rate, preds.pixels()[0],
                                  cfg.eval.pixel_false_alarm_rate, preds.class_ids, class_names)
    return calibration, standardizer, HeldOutScores.of(preds, class_names)
