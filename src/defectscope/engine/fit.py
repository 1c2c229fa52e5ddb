"""The training loop: one Fabric loop for CPU, one GPU or many (DDP under torchrun).

`fit` trains a model it is given, on datasets it is given, and returns how far it got; it
does not build, calibrate, save a final checkpoint or evaluate — `engine.run` does, once.

Resuming is exact: the order of the training images is a pure function of (seed, epoch),
each image's augmentation a pure function of (seed, epoch, index), and `checkpoints/last`
holds the position inside the epoch and every RNG state, so a run resumed from any
checkpoint ends with the same weights as one never interrupted (bit for bit on a CPU).
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from lightning.fabric import Fabric
from lightning.fabric.strategies import DDPStrategy
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler
from tqdm.auto import tqdm

from defectscope.config import RunConfig
from defectscope.engine.checkpoint import CheckpointError, save_checkpoint
from defectscope.engine.files import write_text_atomic
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


class EpochSampler(Sampler[tuple[int, int]]):
    """The training order: a pure function of (seed, epoch), split over the processes, resumable mid-epoch.

    Yields `(epoch, index)`, so an item knows its epoch in any worker process (a persistent
    worker never sees `set_epoch` called in the main process). `start(epoch, skip)` drops the
    first `skip` indices of that epoch's order without loading them, which is how a resumed
    run continues inside an epoch.
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        # drop_last=False: a rank short of items repeats some, as Fabric's own sampler does
        self.order = DistributedSampler(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed,
                                        drop_last=False)
        self.epoch = self.skip = 0

    def start(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.order.set_epoch(epoch)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in list(self.order)[self.skip:])

    def __len__(self) -> int:
        return len(self.order) - self.skip


class EpochItems(Dataset):
    """Item `(epoch, index)` of `dataset`, with its random augmentation fixed by (seed, epoch, index).

    The dataset draws from torch's global generator (or its own, per `set_epoch`); forking the
    generator around each item keeps those draws out of the training's own random stream and
    makes them the same in any process, in any order, before and after a resume.
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(epoch)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(np.random.SeedSequence([self.seed, epoch, index]).generate_state(1)[0]))
            return self.dataset[index]


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

    def truncate(self, phase_names: list[str], phase_index: int, step: int) -> None:
        """Keep only the records up to a checkpoint's position, so a resumed run logs no step twice.

        A line cut short by a killed process, or from a phase this model does not have, goes too.
        """
        if not (self.enabled and self.path.is_file()):
            return
        order = {name: i for i, name in enumerate(phase_names)}
        kept = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
                phase, logged = order[record["phase"]], int(record["step"])
            except (ValueError, KeyError, TypeError):
                continue
            if phase < phase_index or (phase == phase_index and logged <= step):
                kept.append(line + "\n")
        write_text_atomic(self.path, "".join(kept))


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
    loader: Any  # batches of the training set, in the order `sampler` gives
    sampler: EpochSampler
    steps_per_epoch: int  # batches in a whole epoch on this process
    steps_before: int = 0  # optimiser steps (or collect batches) of the phases already done


@dataclass(frozen=True)
class Position:
    """Where training stands: the phase, its step, and how far into which epoch."""

    phase_index: int = 0
    step: int = 0  # optimiser steps taken in this phase
    epoch: int = 0
    batch: int = 0  # batches of `epoch` already trained on


def fit(
    cfg: RunConfig,
    model: AnomalyModel,
    train_set: Dataset,
    class_names: list[str],
    fabric: Fabric,
    trainer_state: dict[str, Any] | None = None,
) -> FitResult:
    """Train `model` (already built and, on resume, loaded) through all its phases.

    `trainer_state` is a `checkpoints/last` folder's (`checkpoint.load_trainer_state`); with
    it, training continues exactly where that checkpoint was taken.
    """
    run_dir = Path(cfg.output_dir)
    start = Position()
    if trainer_state is not None:
        start = Position(*(trainer_state[k] for k in ("phase_index", "step", "epoch", "batch")))

    if any(p.requires_grad for p in model.parameters()):
        module = fabric.setup_module(model)
        module.mark_forward_method("training_step")
    else:  # nothing to train (a frozen backbone and a memory bank): DDP refuses such modules
        module = model.to(fabric.device)
    sampler = EpochSampler(train_set, fabric.world_size, fabric.global_rank, cfg.train.seed)
    drop_last = len(train_set) >= cfg.data.batch_size * fabric.world_size  # type: ignore[arg-type]
    loader = DataLoader(
        EpochItems(train_set, cfg.train.seed),
        batch_size=cfg.data.batch_size,
        sampler=sampler,
        drop_last=drop_last,
        num_workers=cfg.data.num_workers,
        persistent_workers=cfg.data.num_workers > 0,
        # the loader draws a seed for its workers on every epoch; from its own generator, not
        # from the global one the model's random choices come from
        generator=torch.Generator().manual_seed(cfg.train.seed),
    )
    per_epoch = len(sampler) // cfg.data.batch_size if drop_last else math.ceil(len(sampler) / cfg.data.batch_size)
    log = TrainLog(run_dir / TRAIN_LOG, fabric.is_global_zero)
    phases = model.phases()
    seconds = 0.0
    if trainer_state is not None:
        if start.phase_index >= len(phases):
            raise CheckpointError(f"trainer state: phase {start.phase_index} of a model with {len(phases)} phases")
        log.truncate([p.name for p in phases], start.phase_index, start.step)
        seconds = float(trainer_state["seconds"])
    loop = _Loop(fabric, module, model, cfg, log, time.perf_counter() - seconds, run_dir, class_names,
                 fabric.setup_dataloaders(loader, use_distributed_sampler=False), sampler, max(1, per_epoch),
                 int(trainer_state["steps_before"]) if trainer_state is not None else 0)

    for phase_index, phase in enumerate(phases):
        if phase_index < start.phase_index:
            continue
        resuming = trainer_state is not None and phase_index == start.phase_index
        if not resuming:
            model.start_phase(phase.name)
        if phase.kind == "collect":
            loop.steps_before += _run_collect(loop, train_set, phase)
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
        position = Position(phase_index)
        if resuming:
            _load_optimizers(fabric_opts, trainer_state["optimizers"])
            set_rng_state(trainer_state["rng"])  # last: nothing before the first step may draw from them
            position = start
        lr_scales = {name: group.lr_scale for name, group in groups.items()}
        loop.steps_before += _run_phase(loop, fabric_opts, lr_scales, phase, position, base_lr)
    return FitResult(loop.steps_before, time.perf_counter() - loop.began)


def _run_phase(
    loop: _Loop,
    optimizers: dict[str, Any],
    lr_scales: dict[str, float],
    phase: Phase,
    at: Position,
    base_lr: float,
) -> int:
    fabric, module, model, train = loop.fabric, loop.module, loop.model, loop.cfg.train
    total = _total_steps(phase, loop.cfg, loop.steps_per_epoch)
    epochs = math.ceil(total / loop.steps_per_epoch)
    began = loop.began
    deadline = began + train.max_minutes * 60 if train.max_minutes > 0 and phase.epochs is None else None
    bar = tqdm(
        total=total, initial=at.step, desc=f"train {phase.name}",
        disable=not (train.progress and fabric.is_global_zero), dynamic_ncols=True,
    )
    module.train()
    for name in phase.frozen:
        model.get_submodule(name).eval()
    step, epoch, batch_in_epoch = at.step, at.epoch, at.batch
    stop = step >= total
    while not stop and epoch < epochs:
        loop.sampler.start(epoch, skip=batch_in_epoch * loop.cfg.data.batch_size)
        for batch in loop.loader:
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
            batch_in_epoch += 1
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
                _save_last(loop, optimizers, Position(at.phase_index, step, epoch, batch_in_epoch))
            stop = step >= total
            if deadline is not None:
                stop = bool(fabric.broadcast(stop or time.perf_counter() > deadline, src=0))
            if stop:
                break
        if batch_in_epoch >= loop.steps_per_epoch:
            epoch, batch_in_epoch = epoch + 1, 0
    bar.close()
    if train.checkpoint_every > 0:
        _save_last(loop, optimizers, Position(at.phase_index, step, epoch, batch_in_epoch))
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


def _save_last(loop: _Loop, optimizers: dict[str, Any], at: Position) -> None:
    """`checkpoints/last`: weights plus everything `train --resume` needs to continue exactly here."""
    if at.batch >= loop.steps_per_epoch:  # the epoch is done: resume at the start of the next
        at = Position(at.phase_index, at.step, at.epoch + 1, 0)
    if loop.fabric.is_global_zero:
        state = {
            "phase_index": at.phase_index, "step": at.step, "epoch": at.epoch, "batch": at.batch,
            "steps_before": loop.steps_before, "seconds": time.perf_counter() - loop.began,
            "optimizers": {name: opt.state_dict() for name, opt in optimizers.items()},
            # rank 0's generators; under DDP every rank starts from the same seed
            "rng": rng_state(),
        }
        save_checkpoint(loop.run_dir / "checkpoints" / "last", loop.model, loop.cfg, loop.class_names,
                        step=loop.steps_before + at.step, trainer_state=state)
    loop.fabric.barrier()


def _load_optimizers(optimizers: dict[str, Any], saved: Any) -> None:
    if not isinstance(saved, dict) or set(saved) != set(optimizers):
        found = sorted(saved) if isinstance(saved, dict) else type(saved).__name__
        raise CheckpointError(f"trainer state: optimisers {found}, but this model trains {sorted(optimizers)}")
    for name, opt in optimizers.items():
        try:
            opt.load_state_dict(saved[name])
        except (ValueError, KeyError, TypeError, RuntimeError) as err:
            raise CheckpointError(f"trainer state: optimiser {name!r} does not fit this model ({err})") from err


def rng_state() -> dict[str, Any]:
    """Every generator a training step may draw from, as tensors and plain values (loadable weights_only)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, python_gauss = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": [version, list(internal), python_gauss],
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Put back what `rng_state` saved; a state of the wrong shape is a CheckpointError."""
    try:
        torch.set_rng_state(state["torch"])
        n = state["numpy"]
        np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as err:
        raise CheckpointError(f"trainer state: random generator states cannot be restored ({err})") from err
