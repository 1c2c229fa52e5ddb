"""One inference path for predict, serve and export: images in, calibrated detections out.

`Detector` wraps a torch checkpoint; anything else that scores images (an ONNX session, say)
only has to satisfy `DetectorLike` to be served the same way. `Detection`, `DetectorLike` and
`normalized_score` live in the torch-free `defectscope.detection` and are re-exported here.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectscope.data.geometry import as_hw, fit, restore
from defectscope.detection import (
    CalibratedClasses,
    Detection,
    DetectorLike,
    detection_from,
    image_array,
    normalized_score,
)
from defectscope.engine.checkpoint import Checkpoint, load_checkpoint
from defectscope.engine.inference import Viewing, infer, standardized

__all__ = ["Detection", "Detector", "DetectorLike", "normalized_score"]


def _as_chw(image: np.ndarray, index: int) -> torch.Tensor:
    """(H, W, 3) or (H, W) uint8 / float in [0, 1] → (3, H, W) float32, read as every runtime reads it."""
    return torch.from_numpy(image_array(image, index)).permute(2, 0, 1)


class Detector(CalibratedClasses):
    """A checkpoint ready to score: model in eval mode on its device, calibration at hand.

    `score` is safe to call from several threads; calls run the network one at a time.
    """

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.image_size = checkpoint.config.data.image_size
        self.calibration = dict(checkpoint.calibration)
        self._class_names = list(checkpoint.class_names)
        self._lock = threading.Lock()  # torch modules are not promised thread-safe (buffers, caches)
        checkpoint.model.eval().to(self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", batch_size: int = 8) -> Detector:
        """Load a run's checkpoint folder (or its model.safetensors); CheckpointError names a bad path."""
        return cls(load_checkpoint(path), device, batch_size)

    @torch.no_grad()
    def score(self, images: Sequence[np.ndarray], class_name: str | None = None) -> list[Detection]:
        """Score images of any size, as the run was evaluated (resize or tiles, standardiser); each
        detection's map comes back at its image's own size."""
        class_id = self.class_id(class_name)
        data = self.checkpoint.config.data
        size, viewing = as_hw(data.image_size), Viewing.of(data)
        detections: list[Detection] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [_as_chw(image, start + i) for i, image in enumerate(images[start : start + self.batch_size])]
            fitted = [fit(t, size, data.resize) for t in chunk]
            class_ids = torch.full((len(chunk),), class_id, dtype=torch.long)
            with self._lock:
                maps, scores = infer(self.checkpoint.model, [f[0] for f in fitted], class_ids, [f[1] for f in fitted],
                                     viewing, self.batch_size, self.device)
                maps, scores = standardized(maps, scores, class_ids, self.checkpoint.standardizer)
            for image, (_, box), amap, score in zip(chunk, fitted, maps, scores.cpu(), strict=True):
                original = restore(amap.float().cpu(), box, tuple(image.shape[-2:]))
                detections.append(detection_from(float(score), original.numpy(), self.calibration,
                                                 self.class_names[class_id]))
        return detections

    def info(self) -> dict[str, Any]:
        """What a client needs to read the numbers: model, classes, thresholds, input size, version."""
        from defectscope import __version__

        cal = self.calibration
        return {
            "model_name": self.checkpoint.config.model_name,
            "class_names": self.class_names,
            "image_size": list(self.image_size) if isinstance(self.image_size, tuple) else self.image_size,
            "resize": self.checkpoint.config.data.resize,
            "tiling": dataclasses.asdict(self.checkpoint.config.data.tiling),
            "image_threshold": cal.get("image_threshold"),
            "pixel_threshold": cal.get("pixel_threshold"),
            "image_score_mean": cal.get("image_score_mean"),
            "image_score_std": cal.get("image_score_std"),
            # the promise behind each threshold (engine/calibrate.py); None for older checkpoints
            "image_false_alarm_rate": cal.get("image_false_alarm_rate"),
            "image_false_alarm_bound": cal.get("image_false_alarm_bound"),
            "pixel_false_alarm_rate": cal.get("pixel_false_alarm_rate"),
            "map_standardization": self.checkpoint.standardizer is not None,
            "step": self.checkpoint.step,
            "device": str(self.device),
            "backend": "torch",
            "defectscope_version": __version__,
        }
