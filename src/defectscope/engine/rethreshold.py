"""Set a fitted model's image threshold again, from the held-out scores its calibration keeps: no refitting.

The checkpoint is written again atomically (`save_checkpoint`: new digests, a reader sees the old
file or the new one), with the stated rate in its config so that `test` and `export` agree.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from defectscope.config import ConfigError
from defectscope.engine.checkpoint import load_checkpoint, save_checkpoint
from defectscope.engine.run import FINAL
from defectscope.scoring.calibration import Calibration


def checkpoint_folder(path: str | Path) -> Path:
    """A run folder (its checkpoints/final) or a checkpoint folder."""
    path = Path(path)
    return path / FINAL if (path / FINAL).is_dir() else path


def rethreshold(path: str | Path, false_alarm_rate: float | None = None, score: float | None = None,
                class_name: str | None = None, output: str | Path | None = None,
                ) -> tuple[Calibration, Calibration, Path]:
    """(old, new calibration, where it was written): at a stated rate, or at a score the user names."""
    if (false_alarm_rate is None) == (score is None):
        raise ConfigError("threshold: give exactly one of --false-alarm-rate R or --score S")
    folder = checkpoint_folder(path)
    checkpoint = load_checkpoint(folder)
    old = checkpoint.calibration
    if old is None:
        raise ConfigError(f"{folder}: no calibration (the run held out no normal image), so no threshold to set")
    if class_name is not None and class_name not in checkpoint.class_names:
        raise ConfigError(f"--class-name {class_name!r} is not one of {checkpoint.class_names}")
    try:
        new = old.at_rate(false_alarm_rate) if false_alarm_rate is not None else old.at_score(score, class_name)
    except ValueError as err:
        raise ConfigError(f"{folder}: {err}") from err
    cfg = checkpoint.config
    cfg = dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, false_alarm_rate=new.false_alarm_rate))
    target = Path(output) if output is not None else folder
    save_checkpoint(target, checkpoint.model, cfg, checkpoint.class_names, new, step=checkpoint.step,
                    standardizer=checkpoint.standardizer)
    return old, new, target
