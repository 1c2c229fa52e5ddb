"""What an exported graph carries besides its weights, as ONNX `metadata_props` (string → string).

Every value is JSON, so any ONNX runtime in any language reads the thresholds, the classes and
the input size without defectscope. Torch-free: the runtime reads it, the exporter writes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, asdict, dataclass, fields

EXPORT_FORMAT = "defectscope-onnx/1"
INPUTS = ("images", "class_ids")
OUTPUTS = ("anomaly_map", "image_score")
# how the graph wants its input; the runtime (export/resize.py) does exactly this
INPUT_LAYOUT = (
    "images: float32 (B, 3, H, W) RGB in [0, 1]: image_size (or a tile of tiling.tile, cut as tiling "
    "says), brought from the original by resize with "
    "antialiased bilinear (half-pixel centres, torch's antialias=True / PIL's BILINEAR filter) and "
    "clamped to [0, 1]; class_ids: int64 (B,), index into class_names, present only when there are "
    "several classes. Outputs: anomaly_map float32 (B, S, S) (bilinear back to the original size, "
    "no antialias, to compare with pixel_threshold), image_score float32 (B,) (against image_threshold)"
)


class ExportError(ValueError):
    """An exported model is missing, unreadable or not ours; the message names the file."""


@dataclass(frozen=True)
class ExportInfo:
    """Everything a runtime needs to read an exported graph's numbers."""

    model_name: str
    class_names: list[str]
    image_size: int | list[int]  # data.image_size: one side, or [height, width]
    calibration: dict[str, float]  # the checkpoint's calibration: thresholds, held-out score mean/std, ...
    map_standardization: bool  # the graph z-scores its maps with the checkpoint's MapStandardizer
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

    def props(self) -> dict[str, str]:
        """The metadata_props: each field as JSON, thresholds also as keys of their own."""
        props = {k: json.dumps(v) for k, v in asdict(self).items()}
        for key in ("image_threshold", "pixel_threshold"):
            props[key] = json.dumps(self.calibration.get(key))
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
