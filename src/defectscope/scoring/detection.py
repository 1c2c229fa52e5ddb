"""What a detector returns and promises, without torch: shared by the torch `Detector` and the
ONNX runtime (`defectscope.export.runtime`), so both read images, calibrate and report the same way.

Only numpy here: a machine that runs an exported model imports this module and nothing of torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import numpy as np

from defectscope.scoring.calibration import Calibration

__all__ = ["FEATURE_RUNTIMES", "CalibratedClasses", "Detection", "DetectorLike", "FeatureRuntime", "detection_from",
           "image_array", "normalized_score"]

# what computes a checkpoint's frozen backbone features when it scores (engine.detector.Detector):
# auto is onnxruntime on a CPU where it is installed, else torch
FeatureRuntime = Literal["auto", "torch", "onnxruntime"]
FEATURE_RUNTIMES: tuple[FeatureRuntime, ...] = ("auto", "torch", "onnxruntime")


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


class CalibratedClasses:
    """What every detector derives from its class names and calibration, written once for all.

    Subclasses set `_class_names` (list[str]) and `calibration` (None: not calibrated) in their constructor.
    """

    _class_names: list[str]
    calibration: Calibration | None

    @property
    def class_names(self) -> list[str]:
        return list(self._class_names) or ["default"]

    @property
    def threshold(self) -> float | None:
        """The pooled image threshold (a per-class calibration applies each class's own in `score`)."""
        return None if self.calibration is None else self.calibration.image.threshold.value

    def set_false_alarm_rate(self, rate: float) -> None:
        """Thresholds for another stated rate, from the held-out scores the calibration keeps (nothing re-scored)."""
        if self.calibration is None:
            raise ValueError("this model has no calibration (no held-out normal images): no threshold to move")
        self.calibration = self.calibration.at_rate(rate)

    def promise(self, class_name: str | None = None) -> dict[str, Any]:
        """The threshold that applies and what it promises, as clients read it (empty when not calibrated)."""
        return {} if self.calibration is None else self.calibration.summary(class_name)

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


def image_array(image: np.ndarray, index: int) -> np.ndarray:
    """(H, W, 3), (H, W, 1) or (H, W) uint8 / float in [0, 1] → (H, W, 3) float32 in [0, 1].

    Errors name the image by its position in the call.
    """
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[2] not in (1, 3) or min(image.shape[:2]) < 1:
        raise ValueError(f"image {index}: expected an (H, W, 3) array, got shape {image.shape}")
    if image.dtype == np.uint8:
        array = image.astype(np.float32) / np.float32(255.0)
    elif np.issubdtype(image.dtype, np.floating):
        array = np.asarray(image, dtype=np.float32)
        if not np.isfinite(array).all():
            raise ValueError(f"image {index}: contains NaN or infinite values")
        array = np.clip(array, 0.0, 1.0)
    else:
        raise ValueError(f"image {index}: expected uint8 or float values in [0, 1], got {image.dtype}")
    return np.repeat(array, 3, axis=2) if array.shape[2] == 1 else np.ascontiguousarray(array)


def detection_from(score: float, anomaly_map: np.ndarray, calibration: Calibration | None, class_name: str,
                   ) -> Detection:
    """A detection from a raw score and the map at the image's size, read against the class's calibration."""
    full = np.asarray(anomaly_map, dtype=np.float32)
    if calibration is None:
        return Detection(score=float(score), threshold=None, normalized_score=None, defective=None,
                         defect_area=None, anomaly_map=full, class_name=class_name)
    part = calibration.for_class(class_name)
    threshold = part.threshold.value
    return Detection(
        score=float(score),
        threshold=threshold,
        normalized_score=normalized_score(score, threshold, part.held_out.mean, part.held_out.std),
        defective=bool(score > threshold),
        defect_area=None if calibration.pixel is None else float((full > calibration.pixel.value).mean()),
        anomaly_map=full,
        class_name=class_name,
    )
