"""A torch checkpoint ready to score: the `ScoringPath` with the model as its network.

`Detection`, `DetectorLike` and `normalized_score` live in the torch-free `defectscope.detection`
and are re-exported here; `defectscope.export.runtime.OnnxDetector` is the same path with an
onnxruntime session as its network.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectscope.engine.checkpoint import Checkpoint, load_checkpoint
from defectscope.engine.inference import torch_network, viewing_of
from defectscope.scoring.detection import Detection, DetectorLike, normalized_score
from defectscope.scoring.info import detector_info
from defectscope.scoring.path import ScoringPath

__all__ = ["Detection", "Detector", "DetectorLike", "normalized_score"]


class Detector(ScoringPath):
    """A checkpoint ready to score: model in eval mode on its device, calibration at hand.

    `score` is safe to call from several threads; calls run the network one at a time.
    """

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.viewing = viewing_of(checkpoint.config.data)
        self.standardizer = checkpoint.standardizer
        self.calibration = checkpoint.calibration
        self._class_names = list(checkpoint.class_names)
        checkpoint.model.eval().to(self.device)
        self._network = torch_network(checkpoint.model, self.device, threading.Lock())

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", batch_size: int = 8) -> Detector:
        """Load a run's checkpoint folder (or its model.safetensors); CheckpointError names a bad path."""
        return cls(load_checkpoint(path), device, batch_size)

    def network(self, images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._network(images, class_ids)

    def info(self) -> dict[str, Any]:
        """What a client needs to read the numbers: model, classes, geometry, the calibration and its promise."""
        data = self.checkpoint.config.data
        return detector_info(
            model_name=self.checkpoint.config.model_name, class_names=self.class_names, image_size=data.image_size,
            viewing=self.viewing, calibration=self.calibration, map_standardization=self.standardizer is not None,
            step=self.checkpoint.step, device=str(self.device), backend="torch")
