"""One inference path for predict, serve and export: images in, calibrated detections out.

`Detector` wraps a torch checkpoint; anything else that scores images (an ONNX session, say)
only has to satisfy `DetectorLike` to be served the same way.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F

from defectscope.data.transforms import resize_image
from defectscope.engine.checkpoint import Checkpoint, load_checkpoint

__all__ = ["Detection", "Detector", "DetectorLike", "normalized_score"]


@dataclass(frozen=True)
class Detection:
    """The verdict on one image; the calibration fields are None when the checkpoint has none."""

    score: float  # the model's raw image score
    threshold: float | None  # image_threshold: scores above it are defects
    normalized_score: float | None  # in [0, 1], threshold at exactly 0.5 (normalized_score)
    defective: bool | None  # score > threshold
    defect_area: float | None  # share of pixels whose map value exceeds pixel_threshold
    anomaly_map: np.ndarray  # (H, W) float32 at the input's own size
    class_name: str


@runtime_checkable
class DetectorLike(Protocol):
    """What the service and the verbs need from a detector, whatever runs the network."""

    @property
    def class_names(self) -> list[str]: ...

    def score(self, images: Sequence[np.ndarray], class_name: str | None = None) -> list[Detection]: ...

    def info(self) -> dict[str, Any]: ...


def normalized_score(score: float, threshold: float, mean: float | None, std: float | None) -> float:
    """Map a raw score to [0, 1] so that a person reads any model the same way: 0.5 is the threshold.

    The map is linear, clipped at 0 and 1: ``0.5 + 0.25 * (score - threshold) / spread``. With
    ``spread = threshold - mean`` (mean: the held-out normal images' mean score) the normal mean
    lands on 0.25, the threshold on 0.5, and a score as far above the threshold as the mean is
    below it on 0.75; 1 is reached at twice that distance. When that spread is not positive (one
    held-out image, or no mean stored) the held-out standard deviation is used, and 1 when that
    is missing or zero too. The map is increasing between its clips and the threshold lies
    strictly inside them, so ``normalized > 0.5`` exactly when ``score > threshold`` (a score a
    hair above the threshold, whose distance rounds away next to the spread, gets the next float
    above 0.5).
    """
    spread = threshold - mean if mean is not None else 0.0
    if not spread > 0:
        spread = std if std is not None and std > 0 else 1.0
    value = min(1.0, max(0.0, 0.5 + 0.25 * (score - threshold) / spread))
    return float(np.nextafter(0.5, 1.0)) if score > threshold and value <= 0.5 else float(value)


def _as_chw(image: np.ndarray, index: int) -> torch.Tensor:
    """(H, W, 3) or (H, W) uint8 / float in [0, 1] → (3, H, W) float32, with an error naming the image."""
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"image {index}: expected an (H, W, 3) array, got shape {image.shape}")
    if image.dtype == np.uint8:
        tensor = torch.from_numpy(np.ascontiguousarray(image)).float().div_(255.0)
    elif np.issubdtype(image.dtype, np.floating):
        tensor = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
        if not torch.isfinite(tensor).all():
            raise ValueError(f"image {index}: contains NaN or infinite values")
        tensor = tensor.clamp(0.0, 1.0)
    else:
        raise ValueError(f"image {index}: expected uint8 or float values in [0, 1], got {image.dtype}")
    return tensor.permute(2, 0, 1).expand(3, -1, -1)


class Detector:
    """A checkpoint ready to score: model in eval mode on its device, calibration at hand.

    `score` is safe to call from several threads; calls run the network one at a time.
    """

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu", batch_size: int = 8) -> None:
        self.checkpoint = checkpoint
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.image_size = int(checkpoint.config.data.image_size)
        self.calibration = dict(checkpoint.calibration)
        self._lock = threading.Lock()  # torch modules are not promised thread-safe (buffers, caches)
        checkpoint.model.eval().to(self.device)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", batch_size: int = 8) -> Detector:
        """Load a run's checkpoint folder (or its model.safetensors); CheckpointError names a bad path."""
        return cls(load_checkpoint(path), device, batch_size)

    @property
    def class_names(self) -> list[str]:
        return list(self.checkpoint.class_names) or ["default"]

    @property
    def threshold(self) -> float | None:
        return self.calibration.get("image_threshold")

    def class_id(self, class_name: str | None) -> int:
        """None means the only class; a multi-class model must be told which one the images show."""
        names = self.class_names
        if class_name is None:
            if len(names) > 1:
                raise ValueError(f"this model knows {len(names)} classes; name one of {names}")
            return 0
        if class_name not in names:
            raise ValueError(f"class {class_name!r} is not one of {names}")
        return names.index(class_name)

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
        full = amap.numpy().astype(np.float32, copy=False)
        cal = self.calibration
        threshold, pixel_threshold = cal.get("image_threshold"), cal.get("pixel_threshold")
        return Detection(
            score=score,
            threshold=threshold,
            normalized_score=None if threshold is None else normalized_score(
                score, threshold, cal.get("image_score_mean"), cal.get("image_score_std")),
            defective=None if threshold is None else bool(score > threshold),
            defect_area=None if pixel_threshold is None else float((full > pixel_threshold).mean()),
            anomaly_map=full,
            class_name=self.class_names[class_id],
        )

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
