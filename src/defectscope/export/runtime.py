"""`OnnxDetector`: an exported model scoring images with numpy and onnxruntime; no torch.

It reads images, resizes them, calibrates and reports exactly as the torch `Detector` does
(`defectscope.detection`, `defectscope.export.resize`), so `defectscope serve model.onnx` answers
like `defectscope serve CHECKPOINT` on a machine that has no torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectscope import __version__
from defectscope.detection import CalibratedClasses, Detection, detection_from, image_array
from defectscope.export.metadata import INPUTS, OUTPUTS, ExportError, ExportInfo
from defectscope.export.resize import fit_array, resize_map
from defectscope.geometry import as_hw, tile_grid

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


class OnnxDetector(CalibratedClasses):
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
        if threads is not None:
            options.intra_op_num_threads = threads
        providers = _providers(device, ort.get_available_providers())
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own untyped errors for a bad file
            raise ExportError(f"{self.path}: not a readable ONNX model ({err})") from err
        self.export_info = ExportInfo.from_props(self.session.get_modelmeta().custom_metadata_map, str(self.path))
        self.batch_size = batch_size
        self.image_size = self.export_info.image_size
        self.calibration = dict(self.export_info.calibration)
        self._class_names = list(self.export_info.class_names)
        inputs = [i.name for i in self.session.get_inputs()]
        expected = list(INPUTS[: 2 if self.export_info.multi_class else 1])
        if inputs != expected or [o.name for o in self.session.get_outputs()][:2] != list(OUTPUTS):
            raise ExportError(f"{self.path}: graph inputs {inputs} do not match its metadata (expected {expected})")

    def run(self, images: np.ndarray, class_ids: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The graph itself: (B, 3, S, S) float32 in [0, 1] → maps (B, S, S) and scores (B,)."""
        feeds = {INPUTS[0]: np.ascontiguousarray(images, dtype=np.float32)}
        if self.export_info.multi_class:
            ids = np.zeros(len(images), np.int64) if class_ids is None else class_ids
            feeds[INPUTS[1]] = np.ascontiguousarray(ids, dtype=np.int64)
        maps, scores = self.session.run(list(OUTPUTS), feeds)
        return maps, scores

    def score(self, images: Sequence[np.ndarray], class_name: str | None = None) -> list[Detection]:
        """Score images of any size as the torch `Detector` does (resize or tiles); each detection's map
        comes back at its image's own size."""
        class_id = self.class_id(class_name)
        name = self.class_names[class_id]
        meta = self.export_info
        size = as_hw(meta.image_size)
        detections: list[Detection] = []
        for start in range(0, len(images), self.batch_size):
            chunk = [image_array(image, start + i) for i, image in enumerate(images[start : start + self.batch_size])]
            fitted = [fit_array(a, size, meta.resize) for a in chunk]
            if meta.tiling is None:
                maps, scores = self.run(np.stack([f[0] for f in fitted]), np.full(len(chunk), class_id, np.int64))
                if meta.resize != "stretch":  # the score is the map's max over the image's own pixels
                    scores = np.array([m[b.top:b.top + b.height, b.left:b.left + b.width].max()
                                       for m, (_, b) in zip(maps, fitted, strict=True)])
            else:
                tiled = [self._tiled(image, class_id) for image, _ in fitted]
                maps, scores = [m for m, _ in tiled], np.array([s for _, s in tiled])
            for array, (_, box), amap, score in zip(chunk, fitted, maps, scores, strict=True):
                inner = amap[box.top:box.top + box.height, box.left:box.left + box.width]
                full = resize_map(inner, array.shape[:2])
                detections.append(detection_from(float(score), full, self.calibration, name))
        return detections

    def _tiled(self, image: np.ndarray, class_id: int) -> tuple[np.ndarray, float]:
        """(3, H, W) → stitched (H, W) map and its max, tiles run a batch at a time."""
        tiling = self.export_info.tiling
        tile, hw = tiling["tile"], image.shape[-2:]
        origins = tile_grid(hw, tile, tiling["stride"])
        padded = np.zeros((3, max(hw[0], tile), max(hw[1], tile)), np.float32)
        padded[:, : hw[0], : hw[1]] = image
        mean = tiling["merge"] == "mean"
        total = np.zeros(padded.shape[1:], np.float64) if mean else np.full(padded.shape[1:], -np.inf, np.float32)
        count = np.zeros(padded.shape[1:], np.float64)
        for begin in range(0, len(origins), self.batch_size):
            part = origins[begin : begin + self.batch_size]
            tiles = np.stack([padded[:, y:y + tile, x:x + tile] for y, x in part])
            maps, _ = self.run(tiles, np.full(len(part), class_id, np.int64))
            for m, (y, x) in zip(maps, part, strict=True):
                if mean:
                    total[y:y + tile, x:x + tile] += m
                    count[y:y + tile, x:x + tile] += 1
                else:
                    np.maximum(total[y:y + tile, x:x + tile], m, out=total[y:y + tile, x:x + tile])
        stitched = (total / count).astype(np.float32) if mean else total
        stitched = stitched[: hw[0], : hw[1]]
        return stitched, float(stitched.max())

    def info(self) -> dict[str, Any]:
        """What a client needs to read the numbers: the same keys as Detector.info, and the graph's."""
        meta, cal = self.export_info, self.calibration
        return {
            "model_name": meta.model_name,
            "class_names": self.class_names,
            "image_size": self.image_size,
            "resize": meta.resize,
            "tiling": {"kind": "tiles", **meta.tiling} if meta.tiling else {"kind": "none"},
            "image_threshold": cal.get("image_threshold"),
            "pixel_threshold": cal.get("pixel_threshold"),
            "image_score_mean": cal.get("image_score_mean"),
            "image_score_std": cal.get("image_score_std"),
            "map_standardization": meta.map_standardization,
            "step": meta.checkpoint_step,
            "device": ",".join(self.session.get_providers()),
            "backend": "onnxruntime",
            "defectscope_version": __version__,
            "exported_by": meta.defectscope_version,
            "checkpoint_format": meta.checkpoint_format,
            "exporter": meta.exporter,
            "opset": meta.opset,
        }
