"""The one entry point every verb goes through: fit (or take trained weights), calibrate,
save, evaluate — on the model in memory, never on a copy reloaded from disk."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric import Fabric

from defectscope.config import ConfigError, RunConfig, config_to_raw, config_to_yaml
from defectscope.data import DataBundle, build_datasets
from defectscope.data.config import AutoSize, Tiling
from defectscope.data.dataset import TiledTrainingSet
from defectscope.engine.calibrate import HELD_OUT_SCORES, calibrate
from defectscope.engine.checkpoint import RUN_CHECKPOINT, Checkpoint, load_trainer_state, load_weights, save_checkpoint
from defectscope.engine.crossfit import cross_fit_calibration, require_one_pass, shared_feature_cache
from defectscope.engine.environment import git_commit
from defectscope.engine.evaluate import evaluate
from defectscope.engine.files import write_text_atomic
from defectscope.engine.fit import TRAIN_LOG, fit, make_fabric
from defectscope.engine.gallery import GALLERY_DIR, MAPS_DIR, GalleryPlan
from defectscope.engine.health import training_health
from defectscope.engine.standardize import require_held_out_images
from defectscope.engine.working_size import resolve_working_size
from defectscope.models import AnomalyModel, create_model
from defectscope.models.patchcore.config import PatchCoreConfig
from defectscope.models.patchcore.memory_bank import check_search
from defectscope.scoring.calibration import Calibration
from defectscope.scoring.path import MapStandardizer

FINAL = RUN_CHECKPOINT
LAST = Path("checkpoints") / "last"
# what a run writes into its folder; --overwrite removes exactly these before a new run, and
# only from a folder that holds MARKER (so a file of the user's that shares a name is never taken)
RUN_OUTPUTS = ("config.yaml", TRAIN_LOG, "train_summary.json", "checkpoints", "results.json", "results.md",
               "scores.csv", "curves.json", GALLERY_DIR, MAPS_DIR)
MARKER = ".defectscope-run"
# settings a resumed run may change: they stop training later or sooner, or only concern
# logging, loading speed and the evaluation after training, so they leave the trained weights
# of the steps both runs take unchanged (train.epochs and train.max_steps do reshape a cosine
# learning-rate schedule over the steps still to come); output_dir: the run goes on in another
# folder, whose train_log.jsonl then starts at the checkpoint
RESUME_MAY_CHANGE = ("train.epochs", "train.max_steps", "train.max_minutes", "train.checkpoint_every",
                     "train.log_every", "train.progress", "data.num_workers", "data.cache", "data.eval_batch_size",
                     "output_dir", "eval.")


class RunExistsError(ConfigError):
    """The output folder already holds a run that a new run would overwrite."""


@dataclass
class RunResult:
    run_dir: Path
    model: AnomalyModel  # trained (or loaded) and calibrated, on this process's device
    bundle: DataBundle  # the datasets it was trained, calibrated and tested on
    device: torch.device
    class_names: list[str]
    calibration: Calibration | None
    standardizer: MapStandardizer | None
    checkpoint: Path | None  # the final checkpoint written by this run (None when scoring given weights)
    steps: int = 0
    train_seconds: float = 0.0
    results: dict[str, Any] | None = None  # the test-set results, when evaluated
    health: dict[str, Any] | None = None  # engine.health: did training learn anything?
    config: RunConfig | None = None  # the config as run: data.image_size resolved when it said auto


def build_model(cfg: RunConfig, num_classes: int) -> AnomalyModel:
    """The configured model; settings that do not fit together are a ConfigError naming the model."""
    try:
        return create_model(cfg.model_name, cfg.model, cfg.data.model_input_size, num_classes)
    except ValueError as err:
        raise ConfigError(f"model '{cfg.model_name}': {err}") from err


def run_dir_refusal(run_dir: Path, overwrite: bool) -> RunExistsError | None:
    """Why a new run may not write into `run_dir` (None: it may); deletes nothing, so a verb that
    works long before its run starts can ask first."""
    found = [name for name in RUN_OUTPUTS if (run_dir / name).exists()]
    if not found:
        return None
    if not overwrite:
        finished = (run_dir / FINAL).exists()
        hint = f"resume it with --resume {run_dir / LAST}, " if (run_dir / LAST).exists() and not finished else ""
        return RunExistsError(
            f"{run_dir}: already holds a {'finished' if finished else 'started'} run ({', '.join(found)}); "
            f"choose another output_dir, {hint}or pass --overwrite to delete those and start again"
        )
    if not (run_dir / MARKER).is_file():
        return RunExistsError(
            f"{run_dir}: holds {', '.join(found)}, but no {MARKER} file says defectscope wrote them, so "
            f"--overwrite leaves them alone; choose another output_dir, or delete them yourself"
        )
    return None


def mark_run_dir(run_dir: Path) -> None:
    """Say that defectscope writes here, so a later --overwrite may delete what it wrote."""
    (run_dir / MARKER).write_text("written by defectscope: --overwrite may delete this folder's run files\n")


def check_run_dir(run_dir: Path, overwrite: bool, resume: bool) -> None:
    """Refuse a folder that already holds a run's outputs unless told to resume or overwrite it."""
    if resume:
        return
    refusal = run_dir_refusal(run_dir, overwrite)
    if refusal is not None:
        raise refusal
    for name in RUN_OUTPUTS:
        target = run_dir / name
        if target.exists():
            shutil.rmtree(target) if target.is_dir() else target.unlink()


def check_output_dir(folder: Path, key: str = "output_dir") -> None:
    """The folder results go to exists (or is made) and takes files — checked before any work starts."""
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{key} {folder}: is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"{key} {folder}: cannot write there ({err.strerror or err})") from err


def resume_differences(saved: RunConfig, new: RunConfig) -> list[str]:
    """Every setting, as a dotted key, where `new` differs from the config a checkpoint was trained with,
    except those in RESUME_MAY_CHANGE."""
    before, after = _flatten(config_to_raw(saved)), _flatten(config_to_raw(new))
    differ = []
    for key in sorted(set(before) | set(after)):
        if before.get(key, "(absent)") == after.get(key, "(absent)"):
            continue
        if any(key == allowed or (allowed.endswith(".") and key.startswith(allowed)) for allowed in RESUME_MAY_CHANGE):
            continue
        differ.append(f"{key} (checkpoint {before.get(key, '(absent)')!r}, now {after.get(key, '(absent)')!r})")
    return differ


def _flatten(raw: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _first_process() -> bool:
    """True unless this is a worker torchrun or Fabric started (they find the folder rank 0 prepared)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def run(
    cfg: RunConfig,
    *,
    resume: Checkpoint | None = None,
    weights: Checkpoint | None = None,
    overwrite: bool = False,
    evaluate_test: bool = True,
    output_dir: str | Path | None = None,
    gallery: GalleryPlan | None = None,
    bundle: DataBundle | None = None,
    device: torch.device | None = None,
) -> RunResult:
    """Train cfg's model (or score `weights` without training), calibrate, save, evaluate.

    With `weights` (the `test` verb), nothing is trained or saved: the checkpoint's model is
    scored as it is, and thresholds and the standardiser are fitted again only when the
    config's scoring settings differ from the checkpoint's, on `device` (default: the CPU).
    Results go to `output_dir` (default: the run folder). Under DDP only rank 0 calibrates,
    saves and evaluates.
    """
    if weights is not None:
        return _score_weights(cfg, weights, evaluate_test, Path(output_dir or cfg.output_dir), gallery, bundle,
                              device or torch.device("cpu"))
    if resume is not None and isinstance(cfg.data.image_size, AutoSize):
        # the checkpoint's network has its size: images added since must not move it
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=resume.config.data.image_size))
    if isinstance(cfg.model, PatchCoreConfig):
        check_search(cfg.model.search)  # faiss missing: say so before any work
    cfg, working_size = resolve_working_size(cfg)
    if working_size is not None and _first_process():
        print(f"defectscope: {working_size.describe()}", file=sys.stderr)
    run_dir = Path(cfg.output_dir)
    trainer_state = None
    if resume is not None:
        differ = resume_differences(resume.config, cfg)
        if differ:
            raise ConfigError(
                f"{resume.path}: resuming needs the config the checkpoint was trained with; these settings differ: "
                f"{'; '.join(differ)} (a resumed run may change only {', '.join(RESUME_MAY_CHANGE)}*)"
            )
        if resume.path is None:
            raise ConfigError("resume: only a checkpoint read from disk (checkpoints/last) can be resumed")
        trainer_state = load_trainer_state(resume.path)
    if _first_process():
        check_output_dir(run_dir)
        in_place = resume is not None and run_dir.resolve() == resume.path.resolve().parent.parent
        check_run_dir(run_dir, overwrite, in_place)
        mark_run_dir(run_dir)
    commit = git_commit()  # read once, before the checkout can change under a long run
    Fabric.seed_everything(cfg.train.seed, verbose=False)
    cross_fit = cfg.eval.calibration.kind == "cross_fit"
    if cross_fit:  # every normal training image trains the shipped model and calibrates out of fold
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, validation_fraction=0.0))
    bundle = bundle or build_datasets(cfg.data)
    class_names = list(bundle.class_names)
    require_held_out_images(cfg.eval.map_standardization, len(bundle.validation))
    model = build_model(cfg, len(class_names))
    if cross_fit:
        require_one_pass(model, cfg)
    if resume is not None:
        if resume.class_names != class_names:
            raise ConfigError(f"{resume.path}: trained on classes {resume.class_names}, but the data now gives "
                              f"{class_names}")
        try:
            load_weights(model, resume.model.state_dict())
        except ValueError as err:
            raise ConfigError(f"{resume.path}: the checkpoint does not fit this config's model ({err})") from err
    fabric = make_fabric(cfg, model.ddp_find_unused_parameters)
    fabric.launch()
    if fabric.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(run_dir / "config.yaml", config_to_yaml(cfg))
    fabric.barrier()

    # rank 0 alone cross-fits (and under DDP reads every training image too)
    cache = shared_feature_cache(cfg) if fabric.is_global_zero else None
    with model.sharing_features(cache):
        fitted = fit(cfg, model, bundle.train, class_names, fabric, trainer_state)
    result = RunResult(run_dir, model, bundle, fabric.device, class_names, {}, None, None, fitted.steps, fitted.seconds,
                       config=cfg)
    if fabric.is_global_zero:
        cache_summary = None
        if cross_fit:
            images = bundle.train.base if isinstance(bundle.train, TiledTrainingSet) else bundle.train
            result.calibration, held_out_scores = cross_fit_calibration(
                cfg, images.records, class_names, fabric.device,
                lambda fold_cfg: build_model(fold_cfg, len(class_names)), cache)
            cache_summary, cache = (None if cache is None else cache.summary()), None  # its memory goes now
        else:
            result.calibration, result.standardizer, held_out_scores = calibrate(model, bundle.validation, cfg,
                                                                                 fabric.device, class_names)
        if held_out_scores is not None:
            held_out_scores.write(run_dir / HELD_OUT_SCORES)
        result.checkpoint = save_checkpoint(run_dir / FINAL, model, cfg, class_names, result.calibration,
                                            step=fitted.steps, standardizer=result.standardizer)
        held_out = bundle.validation
        if isinstance(cfg.data.tiling, Tiling):  # the model rebuilds tiles, not whole images
            held_out = TiledTrainingSet(held_out, dataclasses.replace(cfg.data.tiling, train="all"))
        result.health = training_health(model, bundle.train, held_out, len(class_names),
                                        cfg.data.eval_batch_size, fabric.device)
        for warning in result.health["warnings"]:
            print(f"defectscope: warning: {warning}", file=sys.stderr)
        summary = {"steps": fitted.steps, "train_seconds": round(fitted.seconds, 2),
                   "working_size": None if working_size is None else dataclasses.asdict(working_size),
                   "world_size": fabric.world_size, "commit": commit, "health": result.health,
                   "feature_cache": cache_summary}
        write_text_atomic(run_dir / "train_summary.json", json.dumps(summary, indent=2))
        if evaluate_test:
            result.results = evaluate(model, bundle.test, class_names, cfg, fabric.device, run_dir,
                                      checkpoint=result.checkpoint, calibration=result.calibration,
                                      standardizer=result.standardizer, gallery=_plan(cfg, gallery),
                                      health=result.health, working_size=working_size)
            result.results["train_seconds"] = round(fitted.seconds, 1)
    fabric.barrier()
    return result


def _plan(cfg: RunConfig, gallery: GalleryPlan | None) -> GalleryPlan:
    plan = gallery or GalleryPlan()
    if cfg.eval.save_maps and plan.pictures == 0:
        plan = dataclasses.replace(plan, pictures=cfg.eval.max_saved_maps)
    return plan


def _score_weights(
    cfg: RunConfig, weights: Checkpoint, evaluate_test: bool, output_dir: Path, gallery: GalleryPlan | None,
    bundle: DataBundle | None, device: torch.device,
) -> RunResult:
    if evaluate_test:
        check_output_dir(output_dir, "output folder")
    trained = weights.config.data  # the model sees images as it was trained to see them
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, image_size=trained.image_size, resize=trained.resize, tiling=trained.tiling))
    bundle = bundle or build_datasets(cfg.data)
    num_classes = max(1, len(weights.class_names))
    model, calibration, standardizer = weights.model, weights.calibration, weights.standardizer
    trained_eval = weights.config.eval
    scoring_changed = cfg.model != weights.config.model \
        or cfg.eval.map_standardization != trained_eval.map_standardization \
        or cfg.eval.pixel_false_alarm_rate != trained_eval.pixel_false_alarm_rate
    if calibration is not None and not scoring_changed and cfg.eval.false_alarm_rate != calibration.false_alarm_rate:
        # only the stated rate changed: the stored held-out scores set the thresholds again, nothing is re-scored
        calibration = calibration.at_rate(cfg.eval.false_alarm_rate)
    elif scoring_changed or calibration is None and cfg.eval.false_alarm_rate != trained_eval.false_alarm_rate:
        # scoring settings (e.g. --model.prior.score, --eval.map_standardization) apply to the trained weights;
        # thresholds and standardiser are fitted again on the held-out normal images
        model = build_model(cfg, num_classes)
        try:
            load_weights(model, weights.model.state_dict())
        except ValueError as err:
            raise ConfigError(f"{weights.path}: the overrides change the network, not only its scoring ({err})") \
                from err
        calibration, standardizer, _ = calibrate(model, bundle.validation, cfg, device, bundle.class_names)
    result = RunResult(output_dir, model, bundle, device, list(bundle.class_names), calibration, standardizer, None,
                       config=cfg)
    if evaluate_test:
        result.results = evaluate(model, bundle.test, result.class_names, cfg, device, output_dir,
                                  checkpoint=weights.path, calibration=calibration, standardizer=standardizer,
                                  gallery=_plan(cfg, gallery))
    return result
