"""A torch checkpoint ready to score: the `ScoringPath` with the model as its network.

`Detection`, `DetectorLike` and `normalized_score` live in the torch-free `defectscope.detection`
and are re-exported here; `defectscope.export.runtime.OnnxDetector` is the same path with an
onnxruntime session as its network.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectscope.engine.accept import not_absorbing
from defectscope.engine.checkpoint import Checkpoint, load_checkpoint
from defectscope.engine.inference import torch_network, viewing_of
from defectscope.engine.shared_lock import SharedLock
from defectscope.errors import UserError
from defectscope.layers.onnx_features import onnxruntime_available
from defectscope.models.base import Absorbing
from defectscope.scoring.detection import (
    FEATURE_RUNTIMES,
    Detection,
    DetectorLike,
    FeatureRuntime,
    image_array,
    normalized_score,
)
from defectscope.scoring.info import detector_info
from defectscope.scoring.path import ScoringPath, canvas_tiles
from defectscope.scoring.resize import fit_array

__all__ = ["Detection", "Detector", "DetectorLike", "FeatureRuntimeError", "normalized_score"]


class FeatureRuntimeError(UserError):
    """onnxruntime asked for the features where it cannot run them (not installed, not a CPU)."""


def onnxruntime_threads(wanted: FeatureRuntime, device: torch.device) -> int | None:
    """Threads for the features in onnxruntime, or None for torch. `auto`: onnxruntime on a CPU
    where it is installed (2–4× faster backbones, docs/results/speed.md)."""
    if wanted not in FEATURE_RUNTIMES:
        raise FeatureRuntimeError(f"feature_runtime must be one of {FEATURE_RUNTIMES}, got {wanted!r}")
    if wanted == "torch" or (wanted == "auto" and (device.type != "cpu" or not onnxruntime_available())):
        return None
    if device.type != "cpu":
        raise FeatureRuntimeError(f"feature_runtime onnxruntime runs on the CPU; this detector is on {device}")
    if not onnxruntime_available():
        raise FeatureRuntimeError("feature_runtime onnxruntime: onnxruntime is not installed; "
                                  "pip install 'defectscope[export]'")
    return torch.get_num_threads()


class Detector(ScoringPath):
    """A checkpoint ready to score: model in eval mode on its device, calibration at hand.

    `score` is safe to call from several threads, and their network calls run side by side
    (scoring only reads the model); `absorb` waits for them and runs alone.
    """

    def __init__(self, checkpoint: Checkpoint, device: str | torch.device = "cpu", batch_size: int = 8,
                 feature_runtime: FeatureRuntime = "auto") -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.device = torch.device(device)
        threads = onnxruntime_threads(feature_runtime, self.device)  # before any work: a bad choice is said first
        self.checkpoint = checkpoint
        self.batch_size = batch_size
        self.model_name = checkpoint.config.model_name
        self.viewing = viewing_of(checkpoint.config.data)
        self.standardizer = checkpoint.standardizer
        self.calibration = checkpoint.calibration
        self._class_names = list(checkpoint.class_names)
        checkpoint.model.eval().to(self.device)
        tiling = self.viewing.tiling
        size = (tiling.tile, tiling.tile) if tiling else self.viewing.size
        try:
            checkpoint.model.prepare(onnxruntime_threads=threads, input_size=size)
        except Exception as err:  # noqa: BLE001 - the exporter or onnxruntime failing: auto is only a speed-up
            if feature_runtime != "auto" or threads is None:
                raise
            warnings.warn(f"{self.model_name}: its features could not run in onnxruntime ({type(err).__name__}: "
                          f"{err}); scoring them in torch", RuntimeWarning, stacklevel=2)
            checkpoint.model.prepare(onnxruntime_threads=None, input_size=size)
        self._lock = SharedLock()  # scoring calls share it; absorb, which changes what they read, holds it alone
        self._network = torch_network(checkpoint.model, self.device, self._lock.shared)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", batch_size: int = 8,
                        feature_runtime: FeatureRuntime = "auto") -> Detector:
        """Load a run's checkpoint folder (or its model.safetensors); CheckpointError names a bad path."""
        onnxruntime_threads(feature_runtime, torch.device(device))  # a bad choice is said before loading
        return cls(load_checkpoint(path), device, batch_size, feature_runtime)

    def network(self, images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self._network(images, class_ids)

    @property
    def images_per_call(self) -> int | None:
        """The model says (its search may change after loading: read live)."""
        return self.checkpoint.model.images_per_call

    @property
    def can_absorb(self) -> bool:
        return isinstance(self.checkpoint.model, Absorbing)

    @property
    def cannot_absorb(self) -> str:
        """Why this model takes no parts in (a trained network)."""
        return not_absorbing(self.checkpoint.model, self.checkpoint.config.model_name)

    @torch.no_grad()
    def absorb(self, images: Sequence[np.ndarray], class_name: str | None = None) -> dict[str, tuple[float, float]]:
        """Take good parts into the served model as training saw its images (`serve --allow-feedback`).

        Each image is brought to the working size as scoring brings it; a tiled model takes every
        tile of the inference grid. The calibration stays: see `defectscope.engine.accept`.
        """
        model = self.checkpoint.model
        if not isinstance(model, Absorbing):
            raise TypeError(self.cannot_absorb)
        class_id = self.class_id(class_name)
        viewing = self.viewing
        canvases = [fit_array(image_array(image, i), viewing.size or image.shape[:2], viewing.resize)[0]
                    for i, image in enumerate(images)]
        inputs = [tile for canvas in canvases for tile in canvas_tiles(canvas, viewing.tiling)]
        changes: dict[str, tuple[float, float]] = {}
        with self._lock.exclusive():  # all or none: no request scores a half-taken part, a failure undoes it
            before = {name: value.clone() for name, value in model.state_dict().items()}
            try:
                for start in range(0, len(inputs), self.batch_size):
                    # canvases of a "none" resize differ in size: one at a time then
                    chunk = inputs[start:start + self.batch_size]
                    groups = [chunk] if len({c.shape for c in chunk}) == 1 else [[c] for c in chunk]
                    for group in groups:
                        x = torch.from_numpy(np.stack(group)).to(self.device)
                        ids = torch.full((len(group),), class_id, dtype=torch.int64, device=self.device)
                        for name, (was, now) in model.absorb(x, ids).items():
                            changes[name] = (changes.get(name, (was, now))[0], now)
            except BaseException:
                model.load_state_dict(before)
                raise
        return changes

    def info(self) -> dict[str, Any]:
        """What a client needs to read the numbers: model, classes, geometry, the calibration and its promise."""
        data = self.checkpoint.config.data
        return detector_info(
            model_name=self.checkpoint.config.model_name, class_names=self.class_names, image_size=data.image_size,
            viewing=self.viewing, calibration=self.calibration, map_standardization=self.standardizer is not None,
            step=self.checkpoint.step, device=str(self.device), backend="torch", threads=torch.get_num_threads(),
            feature_runtime=self.checkpoint.model.feature_runtime)
