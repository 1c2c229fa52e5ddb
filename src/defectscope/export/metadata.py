"""What an exported graph carries besides its weights, as ONNX `metadata_props` (string → string).

Every value is JSON, so any ONNX runtime in any language reads the thresholds, the classes and
the input size without defectscope. Torch-free: the runtime reads it, the exporter writes it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields
from typing import Any

import numpy as np

from defectscope.errors import UserError
from defectscope.scoring.calibration import Calibration, CalibrationError
from defectscope.scoring.path import MapStandardizer, TileGrid, Viewing

# 2: the graph is the network alone; the map standardiser (if any) travels in the metadata and
# the runtime applies it after stitching, as the torch path does
EXPORT_FORMAT = "defectscope-onnx/2"
INPUTS = ("images", "class_ids")
OUTPUTS = ("anomaly_map", "image_score")
# how the graph wants its input; the runtime (scoring/resize.py) does exactly this
INPUT_LAYOUT = (
    "images: float32 (B, 3, H, W) RGB in [0, 1]: image_size (or a tile of tiling.tile, cut as tiling "
    "says), brought from the original by resize with "
    "antialiased bilinear (half-pixel centres, torch's antialias=True / PIL's BILINEAR filter) and "
    "clamped to [0, 1]; class_ids: int64 (B,), index into class_names, present only when there are "
    "several classes. Outputs: anomaly_map float32 (B, S, S) (bilinear back to the original size, "
    "no antialias, to compare with pixel_threshold), image_score float32 (B,) (the network's own score; "
    "the image score to compare with image_threshold is this with a stretched whole image and no map "
    "standardiser, else the map's maximum over the image's own pixels after stitching and standardising: "
    "map_standardizer holds each class's (H, W) mean and std as base64 float32, z = (map - mean) / std)"
)


class ExportError(UserError):
    """An exported model is missing, unreadable or not ours; the message names the file."""


@dataclass(frozen=True)
class ExportInfo:
    """Everything a runtime needs to read an exported graph's numbers."""

    model_name: str
    class_names: list[str]
    image_size: int | list[int]  # data.image_size: one side, or [height, width]
    calibration: dict[str, Any] | None  # Calibration.to_dict(): thresholds, promises, held-out scores
    map_standardizer: dict[str, Any] | None  # the stitched map's per-class mean and std (see INPUT_LAYOUT)
    checkpoint_format: str
    checkpoint_step: int
    defectscope_version: str
    exporter: str  # "dynamo" or "torchscript" (torch.onnx.export's two paths)
    opset: int
    resize: str = "stretch"  # data.resize: how an image is brought to image_size before the graph
    tiling: dict | None = None  # data.tiling as a mapping (tile, stride, merge), None: whole images
    format: str = EXPORT_FORMAT
    inputs: str = INPUT_LAYOUT

    @property
    def multi_class(self) -> bool:
        return len(self.class_names) > 1

    @property
    def viewing(self) -> Viewing:
        grid = None if self.tiling is None else TileGrid(int(self.tiling["tile"]), int(self.tiling["stride"]),
                                                         self.tiling["merge"])
        return Viewing.of(self.image_size, self.resize, grid)  # type: ignore[arg-type]

    def typed_calibration(self, source: str) -> Calibration | None:
        if self.calibration is None:
            return None
        try:
            return Calibration.from_dict(self.calibration, f"{source}: metadata calibration")
        except CalibrationError as err:
            raise ExportError(str(err)) from err

    def standardizer(self, source: str) -> MapStandardizer | None:
        if self.map_standardizer is None:
            return None
        try:
            shape = tuple(int(v) for v in self.map_standardizer["shape"])
            mean, std = (np.frombuffer(base64.b64decode(self.map_standardizer[k]), "<f4").reshape(shape).copy()
                         for k in ("mean", "std"))
        except (KeyError, TypeError, ValueError) as err:
            raise ExportError(f"{source}: metadata map_standardizer is malformed ({err})") from err
        return MapStandardizer(mean=mean, std=std)

    def props(self) -> dict[str, str]:
        """The metadata_props: each field as JSON, thresholds also as keys of their own."""
        props = {k: json.dumps(v) for k, v in asdict(self).items()}
        summary = {} if self.calibration is None else Calibration.from_dict(self.calibration).summary()
        for key in ("image_threshold", "pixel_threshold", "false_alarm_rate", "false_alarm_bound", "held_out_normals"):
            props[key] = json.dumps(summary.get(key))
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str) -> ExportInfo:
        """Read metadata_props back; a file without them, or of another format, is an ExportError naming it."""
        found = props.get("format")
        if found is None:
            raise ExportError(f"{source}: no defectscope metadata (written by `defectscope export`?)")
        try:
            values = {k: json.loads(v) for k, v in props.items()}
        except json.JSONDecodeError as err:
            raise ExportError(f"{source}: metadata is not JSON ({err})") from err
        if values["format"] != EXPORT_FORMAT:
            raise ExportError(f"{source}: exported as {values['format']!r}; this version of defectscope reads "
                              f"{EXPORT_FORMAT!r} (export the checkpoint again)")
        known = set(cls.__dataclass_fields__)
        required = {f.name for f in fields(cls) if f.default is MISSING}
        missing = sorted(required - set(values))
        if missing:
            raise ExportError(f"{source}: metadata lacks {', '.join(missing)}")
        return cls(**{k: values[k] for k in known if k in values})


def standardizer_entry(standardizer: MapStandardizer | None) -> dict[str, Any] | None:
    """The standardiser as JSON: shape and little-endian float32 bytes in base64."""
    if standardizer is None:
        return None
    return {"shape": list(standardizer.mean.shape),
            "mean": base64.b64encode(standardizer.mean.astype("<f4").tobytes()).decode("ascii"),
            "std": base64.b64encode(standardizer.std.astype("<f4").tobytes()).decode("ascii")}
