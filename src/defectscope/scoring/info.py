"""What a detector tells a client about itself: one description for every runtime (`info()`, `/model`)."""

from __future__ import annotations

from typing import Any

from defectscope.scoring.calibration import Calibration
from defectscope.scoring.path import Viewing
from defectscope.version import __version__


def detector_info(*, model_name: str, class_names: list[str], image_size: int | tuple[int, int] | list[int],
                  viewing: Viewing, calibration: Calibration | None, map_standardization: bool, step: int,
                  device: str, backend: str, threads: int, **extra: Any) -> dict[str, Any]:
    """Model, classes, geometry, the threshold and what it promises (rate, bound, n), runtime and version.

    The threshold fields are the pooled ones; `class_thresholds` gives each class's own when the
    model was calibrated per class. They are None when the model has no calibration.
    """
    tiling = viewing.tiling
    promise = {} if calibration is None else calibration.summary()
    return {
        "model_name": model_name,
        "class_names": list(class_names),
        "image_size": list(image_size) if isinstance(image_size, tuple | list) else image_size,
        "resize": viewing.resize,
        "tiling": {"kind": "none"} if tiling is None else {"kind": "tiles", "tile": tiling.tile,
                                                           "stride": tiling.stride, "merge": tiling.merge},
        "image_threshold": promise.get("image_threshold"),
        "pixel_threshold": promise.get("pixel_threshold"),
        "image_score_mean": promise.get("image_score_mean"),
        "image_score_std": promise.get("image_score_std"),
        # the promise behind the image threshold: a new normal image like the held-out ones is
        # flagged with probability at most false_alarm_bound (≤ the stated rate when n allows it)
        "false_alarm_rate": promise.get("false_alarm_rate"),
        "false_alarm_bound": promise.get("false_alarm_bound"),
        "held_out_normals": promise.get("held_out_normals"),
        "pixel_false_alarm_rate": promise.get("pixel_false_alarm_rate"),
        "class_thresholds": None if calibration is None or not calibration.classes else
        {name: calibration.summary(name)["image_threshold"] for name in class_names},
        "map_standardization": map_standardization,
        "step": step,
        "device": device,
        "backend": backend,
        "threads": threads,
        "defectscope_version": __version__,
        **extra,
    }
