"""Good parts the model flagged, taken into what it calls normal without fitting again (`defectscope accept`).

The one-pass models hold normality as statistics that more images extend: PatchCore appends the
parts' patch features to its memory bank, PaDiM updates each position's n, mean and covariance,
the mean image its class's n, mean and spread (each model's `absorb`). A trained network has no
such statistics and is refused.

The calibration. The accepted parts were seen by the model now, so their scores are in-sample
(PatchCore scores them 0) and they never join the held-out scores. By default the stored held-out
scores, and so the threshold and its promise, stay as they are: they are scores of *other* good
parts the model never saw (a hold-out, or cross-fitted folds), and acceptance does not make them
any less like new good parts. For PatchCore the promise then holds conservatively: a larger bank
only shortens every patch's distance to its nearest neighbour, so a part like the held-out ones
scores no higher than it did when the threshold was set (up to Eq. 7's re-weighting, which moves
with the neighbours). For PaDiM and the mean image it holds approximately: k new samples among n
move the statistics by about k/n, and a score may move either way by that much.
With `rescore`, a run calibrated on a hold-out scores its held-out images again with the updated
model (they are still unseen by it), so the threshold is exact for the model as it now is; that
needs the held-out images where the run found them. A cross-fitted run cannot: its shipped model
has seen every calibration image.
The promise in both cases is about good parts like the held-out ones; parts like the accepted
ones were flagged because they are not like them, and now pass because the model was told so.
"""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from defectscope.config import ConfigError, HoldOutCalibration
from defectscope.data.config import DataConfig, Tiling
from defectscope.data.dataset import AnomalyDataset, build_records, dataset_of, training_set
from defectscope.data.discovery import collect_inputs
from defectscope.data.sample import Record
from defectscope.engine.calibrate import calibrate
from defectscope.engine.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from defectscope.engine.inference import viewing_of
from defectscope.engine.predictions import predict_dataset
from defectscope.engine.rethreshold import checkpoint_folder
from defectscope.models.base import Absorbing, AnomalyModel
from defectscope.scoring.calibration import Calibration


@dataclass(frozen=True)
class Accepted:
    """What `accept` did: the images, what changed in the model (name → before, after), scores, calibration."""

    images: list[Path]
    changes: dict[str, tuple[float, float]]
    scores_before: np.ndarray  # (k,) the accepted images' scores before and after, in input order
    scores_after: np.ndarray
    old: Calibration | None
    new: Calibration | None
    rescored: bool
    target: Path
    kept: Path | None  # in place: the checkpoint as it was, to go back to (acceptance cannot be undone otherwise)


def accept(path: str | Path, images: Sequence[str | Path], class_name: str | None = None,
           output: str | Path | None = None, rescore: bool = False, device: str = "cpu") -> Accepted:
    """Take `images` (files or folders of good parts) into the checkpoint at `path`; written to `output` or in place."""
    folder = checkpoint_folder(path)
    target = Path(output) if output is not None else folder
    if output is not None and target.exists():
        raise ConfigError(f"--output {target}: already exists; accept writes a new checkpoint there and replaces "
                          "nothing it was not asked to. Name another folder or remove it")
    checkpoint = load_checkpoint(folder, map_location=device)
    model, cfg = checkpoint.model, checkpoint.config
    if not isinstance(model, Absorbing):
        raise ConfigError(f"{folder}: {not_absorbing(model, cfg.model_name)}")
    category = _class_of(checkpoint, class_name)
    class_ids = {name: i for i, name in enumerate(checkpoint.class_names)} or {category: 0}
    found, _ = collect_inputs([str(p) for p in images])
    paths = list(dict.fromkeys(i.path for i in found))  # a file named twice is taken once
    records = [Record(p, None, 0, category, "good") for p in paths]
    dataset = dataset_of(records, cfg.data, class_ids)
    dev = torch.device(device)

    def scores() -> np.ndarray:
        return predict_dataset(model, dataset, cfg.data.eval_batch_size, dev, keep_maps=False,
                               standardizer=checkpoint.standardizer, viewing=viewing_of(cfg.data)).image_scores

    held_out = _held_out(checkpoint, folder) if rescore else None  # before any work: it may be refused
    before = scores()
    try:
        changes = _absorb(model, dataset, cfg.data, dev)
    except RuntimeError as err:  # the model's own refusal names it ("padim: ..."): n not kept, an empty bank
        if not str(err).startswith(f"{cfg.model_name}:"):
            raise
        raise ConfigError(f"{folder}: {err}") from err
    after = scores()
    new, standardizer = checkpoint.calibration, checkpoint.standardizer
    if held_out is not None:  # still unseen by the model: scored again, they set the threshold for it as it is now
        new, standardizer, _ = calibrate(model, dataset_of(held_out, cfg.data, class_ids), cfg, dev,
                                         checkpoint.class_names)
    kept = _keep_previous(folder) if output is None else None
    save_checkpoint(target, model, cfg, checkpoint.class_names, new, step=checkpoint.step, standardizer=standardizer)
    return Accepted(paths, changes, before, after, checkpoint.calibration, new, rescore, target, kept)


def not_absorbing(model: AnomalyModel, model_name: str) -> str:
    """Why a trained network cannot take parts in, and what to do instead."""
    trained = ", ".join(p.name for p in model.phases() if p.kind != "collect") or "its weights"
    return (f"{model_name} is a trained network (trained by gradient steps: {trained}), so its idea of normal lives "
            "in weights, not in statistics a few images can be added to; put the parts among its training images "
            "and train it again. Models that accept parts: patchcore, padim, mean_image")


def _keep_previous(folder: Path) -> Path:
    """Copy the checkpoint about to be replaced to `<folder>.before-accept-<k>` (first free k), whole or not at all."""
    k = 1
    while (kept := folder.with_name(f"{folder.name}.before-accept-{k}")).exists():
        k += 1
    partial = kept.with_name(f".{kept.name}.tmp")
    shutil.rmtree(partial, ignore_errors=True)  # a copy a kill interrupted
    shutil.copytree(folder, partial)
    partial.rename(kept)
    return kept


def _class_of(checkpoint: Checkpoint, class_name: str | None) -> str:
    names = checkpoint.class_names
    if class_name is not None and class_name not in names:
        raise ConfigError(f"--class-name {class_name!r} is not one of the model's classes {names}")
    if class_name is None and len(names) > 1:
        raise ConfigError(f"this model has several classes ({', '.join(names)}); name the accepted parts' "
                          "with --class-name")
    return class_name or (names[0] if names else "normal")


@torch.no_grad()
def _absorb(model: Absorbing, dataset: AnomalyDataset, data: DataConfig, device: torch.device,
            ) -> dict[str, tuple[float, float]]:
    """The images as training shows them (tiles when it tiles: every tile of the inference grid), never augmented."""
    if isinstance(data.tiling, Tiling):
        data = dataclasses.replace(data, tiling=dataclasses.replace(data.tiling, train="all"))
    changes: dict[str, tuple[float, float]] = {}
    for batch in DataLoader(training_set(dataset, data), batch_size=data.batch_size, shuffle=False):
        for name, (was, now) in model.absorb(batch.image.to(device), batch.class_id.to(device)).items():
            changes[name] = (changes.get(name, (was, now))[0], now)
    return changes


def _held_out(checkpoint: Checkpoint, folder: Path) -> list[Record]:
    """The records of the hold-out the threshold was set on, found again from the stored config."""
    calibration = checkpoint.calibration
    if calibration is None:
        raise ConfigError(f"{folder}: no calibration to score again (the run held out no normal image)")
    if not isinstance(checkpoint.config.eval.calibration, HoldOutCalibration):
        raise ConfigError(f"{folder}: --rescore needs a run calibrated on a hold-out; this one was cross-fitted, so "
                          "its shipped model has seen every calibration image and their scores now would be "
                          "in-sample. Accept without --rescore: the stored out-of-fold scores stay valid")
    held_out = build_records(checkpoint.config.data).validation
    if len(held_out) != calibration.image.threshold.n:
        raise ConfigError(f"--rescore: the run's data now gives {len(held_out)} held-out images, but its threshold "
                          f"was set on {calibration.image.threshold.n}; the data moved or changed since. Accept "
                          "without --rescore")
    return held_out
