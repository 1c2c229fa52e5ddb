"""`OnnxDetector`: an exported model scoring images with numpy and onnxruntime; no torch.

It is the torch `Detector`'s scoring path (`defectscope.scoring.path`) with an onnxruntime session
as its network, so `defectscope serve model.onnx` answers like `defectscope serve CHECKPOINT` on a
machine that has no torch.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from defectscope.export.metadata import INPUTS, OUTPUTS, ExportError, ExportInfo
from defectscope.scoring.info import detector_info
from defectscope.scoring.path import ScoringPath

__all__ = ["OnnxDetector"]


def _providers(device: str, available: list[str]) -> list[str]:
    """cpu → the CPU provider; cuda → CUDA (an error if this onnxruntime has none); auto → CUDA if present."""
    cuda = "CUDAExecutionProvider" in available
    if device == "cuda" and not cuda:
        raise ExportError(f"device cuda: this onnxruntime has no CUDAExecutionProvider (it has {available}); "
                          "install onnxruntime-gpu or use --device cpu")
    if device not in ("cpu", "cuda", "auto"):
        raise ExportError(f"device must be cpu, cuda or auto, got {device!r}")
    return ["CUDAExecutionProvider", "CPUExecutionProvider"] if device != "cpu" and cuda else ["CPUExecutionProvider"]


def available_cores() -> int:
    """The cores this process may run on (a container's or taskset's share, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_call(threads: int | None, calls: int) -> int | None:
    """`threads` as given, or with several calls at once the available cores shared out among them;
    None (one call, nothing given): the runtime's default.

    Two calls of two threads each on two cores answered four clients less well than two calls of
    one (docs/deploy.md): each call's threads wait on the other's."""
    if threads is not None or calls == 1:
        return threads
    return max(1, available_cores() // calls)


class OnnxDetector(ScoringPath):
    """An exported graph ready to score; satisfies `DetectorLike` (the service serves it as it serves a Detector).

    onnxruntime sessions may be run from several threads at once, so `score` takes no lock.
    """

    def __init__(self, path: str | Path, batch_size: int = 8, device: str = "cpu", threads: int | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"{self.path}: exported model not found (expected a .onnx file from defectscope export)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        try:
            import onnxruntime as ort
        except ImportError as err:
            raise ExportError(f"{self.path}: onnxruntime is not installed; pip install 'defectscope[export]'") from err
        options = ort.SessionOptions()
        # said, not left to onnxruntime's default (its count of physical cores), so `info` can tell it
        self.threads = threads if threads is not None else available_cores()
        options.intra_op_num_threads = self.threads
        # onnxruntime's memory pattern plans one allocation for every intermediate of a run and keeps
        # it: for PatchCore's blocked bank search that is every block at once (540 against 340 MiB at
        # batch 1, 3.2 against 1.7 GiB at batch 8, and slower: docs/results/speed.md)
        options.enable_mem_pattern = False
        providers = _providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise ExportError(f"{self.path}: not a readable ONNX model ({err})") from err
        self.export_info = ExportInfo.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.batch_size = batch_size
        self.model_name = self.export_info.model_name
        self.image_size = self.export_info.image_size
        self.viewing = self.export_info.viewing
        self.calibration = self.export_info.typed_calibration(str(self.path))
        self.standardizer = self.export_info.standardizer(str(self.path))
        self._class_names = list(self.export_info.class_names)
        inputs = [i.name for i in self.session.get_inputs()]
        expected = list(INPUTS[: 2 if self.export_info.multi_class else 1])
        if inputs != expected or [o.name for o in self.session.get_outputs()][:2] != list(OUTPUTS):
            raise ExportError(f"{self.path}: graph inputs {inputs} do not match its metadata (expected {expected})")

    def network(self, images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The graph itself: (B, 3, h, w) float32 in [0, 1] → maps (B, h, w) and the network's scores (B,)."""
        feeds = {INPUTS[0]: np.ascontiguousarray(images, dtype=np.float32)}
        if self.export_info.multi_class:
            feeds[INPUTS[1]] = np.ascontiguousarray(class_ids, dtype=np.int64)
        maps, scores = self.session.run(list(OUTPUTS), feeds)
        return maps, scores

    def info(self) -> dict[str, Any]:
        """What a client needs to read the numbers: the same keys as Detector.info, and the graph's."""
        meta = self.export_info
        return detector_info(
            model_name=meta.model_name, class_names=self.class_names, image_size=meta.image_size,
            viewing=self.viewing, calibration=self.calibration, map_standardization=self.standardizer is not None,
            step=meta.checkpoint_step, device=",".join(self.session.get_providers()), backend="onnxruntime",
            threads=self.threads, feature_runtime="onnxruntime",
            exported_by=meta.defectscope_version, checkpoint_format=meta.checkpoint_format, exporter=meta.exporter,
            opset=meta.opset)
