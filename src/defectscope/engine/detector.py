"""One inference path for predict, serve and export: images in, calibrated detections out.

`Detector` wraps a torch checkpoint; anything else that scores images (an ONNX session, say)
only has to satisfy `DetectorLike` to be served the same way. `Detection`, `DetectorLike` and
`normalized_score` live in the torch-free `defectscope.detection` and are re-exported here.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from defectscope.data.transforms import resize_image
from defectscope.detection import (
    CalibratedClasses,
    Detection,
    DetectorLike,
    detection_from,
    image_array,
    normalized_score,
)
from defectscope.engine.checkpoint import Checkpoint, load_checkpoint

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
        self.image_size = int(checkpoint.config.data.image_size)
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
        """Score images of any size; each detection's map comes back at its image's own size."""
        class_id = self.class_id(class_name)
        tensors = [_as_chw(image, i) for i, image in enumerate(images)]
        detections: list[Detection] = []
        for start in range(0, len(tensors), self.batch_size):
            chunk = tensors[start : start + self.batch_size]
            batch = torch.stack([resize_image(t, self.image_size) for t in chunk]).to(self.device)
            class_ids = torch.full((len(chunk),), class_id, dtype=torch.long, device=self.device)
            with self._lock:
                out = self.checkpoint.predict(batch, class_ids)
            maps = out.anomaly_map.float().cpu()  # (B, S, S)
            scores = out.image_score.float().cpu()  # (B,)
            for i, image in enumerate(chunk):
                detections.append(self._detection(float(scores[i]), maps[i], tuple(image.shape[-2:]), class_id))
        return detections

    def _detection(self, score: float, amap: torch.Tensor, size: tuple[int, int], class_id: int) -> Detection:
        if tuple(amap.shape) != size:
            amap = F.interpolate(amap[None, None], size=size, mode="bilinear", align_corners=False)[0, 0]
        return detection_from(score, amap.numpy(), self.calibration, self.class_names[class_id])

    def info(self) -> dict[str, Any]:
        """What a client needs to read the numbers: model, classes, thresholds, input size, version."""
        from defectscope import __version__

        cal = self.calibration
        return {
            "model_name": self.checkpoint.config.model_name,
            "class_names": self.class_names,
            "image_size": self.image_size,
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
