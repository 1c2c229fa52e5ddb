"""The training loop: one Fabric loop for CPU, one GPU or many (DDP under torchrun).

`fit` trains a model it is given, on datasets it is given, and returns how far it got; it
does not build, calibrate, save a final checkpoint or evaluate — `engine.run` does, once.
"""

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
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from defectscope.config import RunConfig
from defectscope.engine.checkpoint import Checkpoint, load_trainer_state, save_checkpoint
from defectscope.engine.schedules import learning_rate
from defectscope.models.base import AnomalyModel, Phase, StepContext

TRAIN_LOG = "train_log.jsonl"


@dataclass
class FitResult:
    steps: int  # optimiser steps (or collect batches) over all phases
    seconds: float


def make_fabric(cfg: RunConfig, find_unused_parameters: bool = False) -> Fabric:
    """Fabric from the config; under torchrun the process count comes from torchrun itself.

    `find_unused_parameters` is the model's own `ddp_find_unused_parameters`: DDP must know
    before the first step whether some parameters get no gradient (several groups or phases).
    """
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
        strategy = DDPStrategy(find_unused_parameters=find_unused_parameters)
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


class TrainLog:
    """Append-only JSON-lines log of every logged step (rank 0 only)."""

    def __init__(self, path: Path, enabled: bool) -> None:
        self.path, self.enabled = path, enabled

    def write(self, record: dict[str, Any]) -> None:
        if self.enabled:
            with self.path.open("a") as f:
                f.write(json.dumps(record) + "\n")


@dataclass
class _Loop:
    """What every phase of one fit shares."""

    fabric: Fabric
    module: Any  # the model as Fabric wrapped it (DDP under torchrun), or the model itself
    model: AnomalyModel
    cfg: RunConfig
    log: TrainLog
    began: float
    run_dir: Path
    class_names: list[str]


def fit(
    cfg: RunConfig,
    model: AnomalyModel,
    train_set: Dataset,
    class_names: list[str],
    fabric: Fabric,
    resume: Checkpoint | None = None,
) -> FitResult:
    """Train `model` (already built and, on resume, loaded) through all its phases."""
    run_dir = Path(cfg.output_dir)
    start = {"phase_index": 0, "step": 0, "epoch": 0}
    trainer_state: dict[str, Any] | None = None
    if resume is not None:
        trainer_state = load_trainer_state(resume.path)
        start = {k: int(trainer_state[k]) for k in start}
        torch.set_rng_state(trainer_state["torch_rng"])

    if any(p.requires_grad for p in model.parameters()):
        module = fabric.setup_module(model)
        module.mark_forward_method("training_step")
    else:  # nothing to train (a frozen backbone and a memory bank): DDP refuses such modules
        module = model.to(fabric.device)
    loader = fabric.setup_dataloaders(
        DataLoader(
            train_set,
            batch_size=cfg.data.batch_size,
            shuffle=True,
            drop_last=len(train_set) >= cfg.data.batch_size * fabric.world_size,
            num_workers=cfg.data.num_workers,
            persistent_workers=cfg.data.num_workers > 0,
        )
    )
    loop = _Loop(fabric, module, model, cfg, TrainLog(run_dir / TRAIN_LOG, fabric.is_global_zero),
                 time.perf_counter(), run_dir, class_names)

    global_step = 0
    for phase_index, phase in enumerate(model.phases()):
        if phase_index < start["phase_index"]:
            continue
        resuming = trainer_state is not None and phase_index == start["phase_index"]
        if not resuming:
            model.start_phase(phase.name)
        if phase.kind == "collect":
            global_step += _run_collect(loop, train_set, phase)
            continue
        groups = model.optimizer_groups(phase.name)
        base_lr = phase.lr if phase.lr is not None else cfg.train.lr
        optimizers = {
            name: torch.optim.AdamW(group.params, lr=base_lr * group.lr_scale, weight_decay=cfg.train.weight_decay,
                                    betas=group.betas)
            for name, group in groups.items()
        }
        wrapped = fabric.setup_optimizers(*optimizers.values())
        fabric_opts = dict(zip(optimizers, (wrapped,) if len(optimizers) == 1 else wrapped, strict=True))
        if resuming:
            for name, opt in fabric_opts.items():
                opt.load_state_dict(trainer_state["optimizers"][name])
        step = start["step"] if resuming else 0
        first_epoch = start["epoch"] if resuming else 0
        lr_scales = {name: group.lr_scale for name, group in groups.items()}
        global_step += _run_phase(loop, loader, fabric_opts, lr_scales, phase, phase_index, step, first_epoch,
                                  base_lr)
    return FitResult(global_step, time.perf_counter() - loop.began)


def _run_phase(
    loop: _Loop,
    loader: DataLoader,
    optimizers: dict[str, Any],
    lr_scales: dict[str, float],
    phase: Phase,
    phase_index: int,
    step: int,
    first_epoch: int,
    base_lr: float,
) -> int:
    fabric, module, model, train = loop.fabric, loop.module, loop.model, loop.cfg.train
    total = _total_steps(phase, loop.cfg, len(loader))
    epochs = math.ceil(total / max(1, len(loader)))
    began = loop.began
    deadline = began + train.max_minutes * 60 if train.max_minutes > 0 and phase.epochs is None else None
    bar = tqdm(
        total=total, initial=step, desc=f"train {phase.name}", disable=not (train.progress and fabric.is_global_zero),
        dynamic_ncols=True,
    )
    module.train()
    for name in phase.frozen:
        model.get_submodule(name).eval()
    stop = step >= total
    epoch = first_epoch
    while not stop and epoch < epochs:
        for seeded in (loader.sampler, loader.dataset):  # shuffling and augmentation per epoch
            if hasattr(seeded, "set_epoch"):
                seeded.set_epoch(epoch)
        for batch in loader:
            lr = learning_rate(step, base_lr, total, train.warmup_steps, train.lr_schedule)
            progress = step / total
            if deadline is not None:
                progress = max(progress, 1 - (deadline - time.perf_counter()) / (deadline - began))
            losses, handoff = {}, {}
            for name, opt in optimizers.items():
                for group in opt.param_groups:
                    group["lr"] = lr * lr_scales[name]
                opt.zero_grad(set_to_none=True)
                ctx = StepContext(step, progress, phase.name, name, handoff)
                losses[name] = module.training_step(batch.image, batch.class_id, ctx)
                handoff = {**handoff, **losses[name].handoff}
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
                for parts in losses.values():
                    record.update(parts.metrics)
                loop.log.write(record)
                bar.set_postfix({k: f"{v:.4g}" for k, v in record.items() if k.endswith("loss")})
            if train.checkpoint_every > 0 and step % train.checkpoint_every == 0:
                _save_last(loop, optimizers, phase_index, step, epoch)
            stop = step >= total
            if deadline is not None:
                stop = bool(fabric.broadcast(stop or time.perf_counter() > deadline, src=0))
            if stop:
                break
        epoch += 1
    bar.close()
    if train.checkpoint_every > 0:
        _save_last(loop, optimizers, phase_index, step, epoch)
    return step


@torch.no_grad()
def _run_collect(loop: _Loop, dataset: Dataset, phase: Phase) -> int:
    """A "collect" phase: one no-grad pass over the training images in dataset order.

    Every process reads every training image (no distributed sampler), so under DDP each rank
    builds the same bank or statistics without any gathering; the pass is cheap next to
    training. Returns the number of batches.
    """
    cfg, model, fabric = loop.cfg, loop.model, loop.fabric
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
    metrics = model.finish_collection(phase.name)
    finished = time.perf_counter()
    loop.log.write({"phase": phase.name, "step": batches, "epoch": 0, "images": images,
                    "collect_seconds": round(collected - started, 2), "finish_seconds": round(finished - collected, 2),
                    "seconds": round(finished - loop.began, 2), **metrics})
    return batches


def _save_last(loop: _Loop, optimizers: dict[str, Any], phase_index: int, step: int, epoch: int) -> None:
    """`checkpoints/last`: weights plus everything `train --resume` needs."""
    if loop.fabric.is_global_zero:
        state = {
            "phase_index": phase_index, "step": step, "epoch": epoch,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            "torch_rng": torch.get_rng_state(),
        }
        save_checkpoint(loop.run_dir / "checkpoints" / "last", loop.model, loop.cfg, loop.class_names, step=step,
                        trainer_state=state)
    loop.fabric.barrier()
