"""The training loop: one Fabric loop for CPU, one GPU or many (DDP under torchrun)."""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from lightning.fabric import Fabric
from lightning.fabric.strategies import DDPStrategy
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from defectscope.config import ConfigError, RunConfig, config_to_yaml
from defectscope.data import build_datasets
from defectscope.engine.checkpoint import load_checkpoint, load_trainer_state, save_checkpoint
from defectscope.engine.environment import git_commit
from defectscope.engine.evaluate import calibrate
from defectscope.engine.schedules import learning_rate
from defectscope.engine.standardize import require_held_out_images
from defectscope.models import MODELS, AnomalyModel, Phase, create_model


@dataclass
class FitResult:
    run_dir: Path
    checkpoint: Path
    steps: int
    seconds: float
    class_names: list[str]
    model: AnomalyModel  # the trained network, unwrapped, on this process's device


def make_fabric(cfg: RunConfig) -> Fabric:
    """Fabric from the config; under torchrun the process count comes from torchrun itself."""
    train = cfg.train
    devices: Any = train.devices
    if devices == "auto":
        devices = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    elif devices.isdigit():
        devices = int(devices)
    strategy: Any = train.strategy
    if strategy == "auto" and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        strategy = "ddp"
    if strategy == "ddp":
        model_cls = MODELS[cfg.model_name][0]
        strategy = DDPStrategy(find_unused_parameters=model_cls.ddp_find_unused_parameters)
    accelerator = "gpu" if train.accelerator == "cuda" else train.accelerator
    num_nodes = max(1, int(os.environ.get("WORLD_SIZE", "1")) // max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return Fabric(
        accelerator=accelerator, devices=devices, strategy=strategy, precision=train.precision,
        num_nodes=num_nodes,
    )


def _total_steps(phase: Phase, cfg: RunConfig, steps_per_epoch: int) -> int:
    epochs = phase.epochs if phase.epochs is not None else cfg.train.epochs
    total = epochs * steps_per_epoch
    if phase.epochs is None and cfg.train.max_steps > 0:
        total = min(total, cfg.train.max_steps)
    return max(1, total)


class _Log:
    """Append-only JSON-lines log of every logged step (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


class RunExistsError(ConfigError):
    """The output folder already holds a finished run that a new run would overwrite."""


def fit(
    cfg: RunConfig, resume: str | Path | None = None, fabric: Fabric | None = None, overwrite: bool = False
) -> FitResult:
    """Train cfg's model on cfg's data; writes checkpoints and train_log.jsonl into output_dir."""
    run_dir = Path(cfg.output_dir)
    if resume is None and not overwrite and (run_dir / "checkpoints" / "final").exists():
        raise RunExistsError(
            f"{run_dir}: already holds a trained run; choose another output_dir, resume it with "
            f"--resume {run_dir / 'checkpoints' / 'last'}, or pass --overwrite to replace it"
        )
    commit = git_commit()  # read once, before the checkout can change under a long run
    fabric = fabric or make_fabric(cfg)
    fabric.launch()
    fabric.seed_everything(cfg.train.seed)
    if fabric.is_global_zero:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "config.yaml").write_text(config_to_yaml(cfg))
    fabric.barrier()

    bundle = build_datasets(cfg.data)
    class_names = list(bundle.class_names)
    require_held_out_images(cfg.eval.map_standardization, len(bundle.validation))
    with fabric.init_module():
        model = create_model(cfg.model_name, cfg.model, cfg.data.image_size, len(class_names))

    start = {"phase_index": 0, "step": 0, "epoch": 0}
    trainer_state: dict[str, Any] | None = None
    if resume is not None:
        restored = load_checkpoint(resume)
        model.load_state_dict(restored.model.state_dict())
        trainer_state = load_trainer_state(resume)
        start = {k: int(trainer_state[k]) for k in start}
        torch.set_rng_state(trainer_state["torch_rng"])

    if any(p.requires_grad for p in model.parameters()):
        module = fabric.setup_module(model)
        module.mark_forward_method("training_step")
    else:  # nothing to train (a frozen backbone and a memory bank): DDP refuses such modules
        module = model.to(fabric.device)
    loader = fabric.setup_dataloaders(
        DataLoader(
            bundle.train,
            batch_size=cfg.data.batch_size,
            shuffle=True,
            drop_last=len(bundle.train) >= cfg.data.batch_size * fabric.world_size,
            num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.num_workers > 0,
        )
    )
    log = _Log(run_dir / "train_log.jsonl", fabric.is_global_zero)
    if resume is None and fabric.is_global_zero:
        (run_dir / "train_log.jsonl").unlink(missing_ok=True)

    began = time.perf_counter()
    global_step = 0
    phases = model.phases()
    for phase_index, phase in enumerate(phases):
        if phase_index < start["phase_index"]:
            continue
        if phase.kind == "collect":
            global_step += _run_collect(fabric, model, bundle.train, phase, cfg, log, began)
            continue
        groups = model.optimizer_groups(phase.name)
        base_lr = phase.lr if phase.lr is not None else cfg.train.lr
        optimizers = {
            name: torch.optim.AdamW(
                params, lr=base_lr * model.optimizer_lr_scale(phase.name, name),
                weight_decay=cfg.train.weight_decay, betas=(0.5, 0.9) if name == "disc" else (0.9, 0.999),
            )
            for name, params in groups.items()
        }
        wrapped = fabric.setup_optimizers(*optimizers.values())
        fabric_opts = dict(zip(optimizers, (wrapped,) if len(optimizers) == 1 else wrapped, strict=True))
        resuming = trainer_state is not None and phase_index == start["phase_index"]
        if resuming:
            for name, opt in fabric_opts.items():
                opt.load_state_dict(trainer_state["optimizers"][name])
        step = start["step"] if resuming else 0
        first_epoch = start["epoch"] if resuming else 0
        total = _total_steps(phase, cfg, len(loader))
        epochs = math.ceil(total / max(1, len(loader)))
        done = _run_phase(
            fabric, module, model, loader, fabric_opts, phase, cfg, log, step, first_epoch, epochs,
            total, base_lr, began, run_dir, class_names, phase_index,
        )
        global_step += done

    seconds = time.perf_counter() - began
    final = run_dir / "checkpoints" / "final"
    if fabric.is_global_zero:
        calibration, standardizer = calibrate(model, bundle.validation, cfg, fabric.device, len(class_names))
        save_checkpoint(final, model, cfg, class_names, calibration, step=global_step, standardizer=standardizer)
        summary = {"steps": global_step, "train_seconds": round(seconds, 2), "world_size": fabric.world_size,
                   "commit": commit}
        (run_dir / "train_summary.json").write_text(json.dumps(summary, indent=2))
    fabric.barrier()
    return FitResult(run_dir, final, global_step, seconds, class_names, model)


def _run_phase(
    fabric: Fabric,
    module: Any,
    model: AnomalyModel,
    loader: DataLoader,
    optimizers: dict[str, Any],
    phase: Phase,
    cfg: RunConfig,
    log: _Log,
    step: int,
    first_epoch: int,
    epochs: int,
    total: int,
    base_lr: float,
    began: float,
    run_dir: Path,
    class_names: list[str],
    phase_index: int,
) -> int:
    train = cfg.train
    deadline = began + train.max_minutes * 60 if train.max_minutes > 0 and phase.epochs is None else None
    bar = tqdm(
        total=total, initial=step, desc=f"train {phase.name}", disable=not (train.progress and fabric.is_global_zero),
        dynamic_ncols=True,
    )
    module.train()
    stop = step >= total
    epoch = first_epoch
    while not stop and epoch < epochs:
        for seeded in (loader.sampler, loader.dataset):  # shuffling and augmentation per epoch
            if hasattr(seeded, "set_epoch"):
                seeded.set_epoch(epoch)
        for batch in loader:
            lr = learning_rate(step, base_lr, total, train.warmup_steps, train.lr_schedule)
            model.progress = step / total
            if deadline is not None:
                model.progress = max(model.progress, 1 - (deadline - time.perf_counter()) / (deadline - began))
            losses = {}
            for name, opt in optimizers.items():
                for group in opt.param_groups:
                    group["lr"] = lr * model.optimizer_lr_scale(phase.name, name)
                opt.zero_grad(set_to_none=True)
                losses[name] = module.training_step(batch.image, batch.class_id, step, phase.name, name)
                fabric.backward(losses[name].total)
                if train.grad_clip > 0:
                    fabric.clip_gradients(module, opt, max_norm=train.grad_clip)
                opt.step()
            step += 1
            bar.update(1)
            if step % train.log_every == 0 or step == total:
                record: dict[str, Any] = {"phase": phase.name, "step": step, "epoch": epoch, "lr": lr,
                                          "seconds": round(time.perf_counter() - began, 2)}
                for name, parts in losses.items():
                    record[f"{name}/loss"] = float(parts.total.detach())
                    record.update({f"{name}/{k}": float(v) for k, v in parts.parts.items()})
                record.update(model.training_metrics())
                log.write(record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.endswith("loss")})
            if train.checkpoint_every > 0 and step % train.checkpoint_every == 0:
                _save_periodic(fabric, model, optimizers, cfg, class_names, phase_index, step, epoch, run_dir)
            stop = step >= total
            if deadline is not None:
                stop = bool(fabric.broadcast(stop or time.perf_counter() > deadline, src=0))
            if stop:
                break
        epoch += 1
    bar.close()
    if train.checkpoint_every > 0:
        _save_periodic(fabric, model, optimizers, cfg, class_names, phase_index, step, epoch, run_dir)
    return step


@torch.no_grad()
def _run_collect(
    fabric: Fabric, model: AnomalyModel, dataset: Any, phase: Phase, cfg: RunConfig, log: _Log, began: float
) -> int:
    """A "collect" phase: one no-grad pass over the training images in dataset order.

    Every process reads every training image (no distributed sampler), so under DDP each rank
    builds the same bank or statistics without any gathering; the pass is cheap next to
    training. Returns the number of batches.
    """
    loader = DataLoader(dataset, batch_size=cfg.data.batch_size, shuffle=False, num_workers=cfg.data.num_workers)
    for seeded in (loader.sampler, loader.dataset):
        if hasattr(seeded, "set_epoch"):
            seeded.set_epoch(0)
    model.eval()
    bar = tqdm(total=len(loader), desc=f"collect {phase.name}", dynamic_ncols=True,
               disable=not (cfg.train.progress and fabric.is_global_zero))
    started = time.perf_counter()
    batches = images = 0
    for batch in loader:
        model.collect(batch.image.to(fabric.device), batch.class_id.to(fabric.device), phase.name)
        batches += 1
        images += len(batch.image)
        bar.update(1)
    bar.close()
    collected = time.perf_counter()
    model.finish_collection(phase.name)
    finished = time.perf_counter()
    log.write({"phase": phase.name, "step": batches, "epoch": 0, "images": images,
               "collect_seconds": round(collected - started, 2), "finish_seconds": round(finished - collected, 2),
               "seconds": round(finished - began, 2), **model.training_metrics()})
    return batches


def _save_periodic(
    fabric: Fabric, model: AnomalyModel, optimizers: dict[str, Any], cfg: RunConfig,
    class_names: list[str], phase_index: int, step: int, epoch: int, run_dir: Path,
) -> None:
    """`checkpoints/last`: weights plus everything `train --resume` needs."""
    if fabric.is_global_zero:
        state = {
            "phase_index": phase_index, "step": step, "epoch": epoch,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(run_dir / "checkpoints" / "last", model, cfg, class_names, step=step, trainer_state=state)
    fabric.barrier()
