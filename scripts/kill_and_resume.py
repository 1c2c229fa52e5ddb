"""SIGKILL `defectscope train` at random moments, resume it, and compare with a run never interrupted.

Used for the "Resume and crashes" section of docs/reliability.md:

    python scripts/kill_and_resume.py [--trials 12] [--steps 24] [--seed 0] [--work /tmp/kills]

Trains a small VQ-E on the demo images (demo/mtsd_mini, 64 px, batches of 4) once without
interruption, then, per trial, starts the same run with `train.checkpoint_every` 1 or 2, waits
until the log shows a random step, waits a random fraction of a second more (so some kills
land inside a checkpoint save), kills it with SIGKILL, and resumes it with
`defectscope train CONFIG --resume RUN/checkpoints/last`. Prints one row per trial: where
the kill landed, where the resume started (step, epoch, batch in the epoch), whether every
tensor of the final weights equals the uninterrupted run's bit for bit, whether the log holds
each step once, and what temporary files the kill left (and the resume cleared).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from defectscope.engine.checkpoint import WEIGHTS, load_trainer_state

REPO = Path(__file__).resolve().parents[1]
CONFIG = """
model: {{name: vq_e, hidden_channels: 16, num_codes: 32, code_dim: 8, downsample: 4}}
data:
  sources: [{{layout: mtsd, root: '{root}'}}]
  image_size: 64
  batch_size: 4
  augment: {{hflip: true, vflip: true, brightness: 0.1}}
train:
  epochs: 100
  max_steps: {steps}
  lr: 1.0e-3
  log_every: 1
  checkpoint_every: {every}
  progress: false
  accelerator: cpu
output_dir: '{out}'
"""


def write_config(folder: Path, steps: int, every: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "run.yaml"
    path.write_text(CONFIG.format(root=REPO / "demo" / "mtsd_mini", steps=steps, every=every, out=folder / "run"))
    return path


def train(config: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "defectscope", "train", str(config), "--no-test", *extra],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def logged(run_dir: Path) -> list[int]:
    path = run_dir / "train_log.jsonl"
    steps = []
    for line in path.read_text().splitlines() if path.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:
            steps.append(-1)  # a line the kill cut short
    return steps


def leftovers(run_dir: Path) -> list[str]:
    return sorted(p.name for p in run_dir.rglob("*") if p.name.endswith(".tmp") or p.name.startswith((".last.",
                                                                                                       ".final.")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--steps", type=int, default=24)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path("/tmp/defectscope_kills"))
    args = parser.parse_args()
    shutil.rmtree(args.work, ignore_errors=True)
    ref_config = write_config(args.work / "reference", args.steps, 0)
    ref = train(ref_config)
    assert ref.wait() == 0, ref.stderr.read()
    reference = load_file(str(ref_config.parent / "run" / "checkpoints" / "final" / WEIGHTS))
    per_epoch = None
    rng = random.Random(args.seed)
    print("| trial | every | killed after step | resumed at step (epoch, batch) | left by the kill | "
          "tensors equal | log steps once each | left after resume |")
    print("|---|---|---|---|---|---|---|---|")
    exact = 0
    for trial in range(args.trials):
        every, kill_at = rng.choice([1, 2]), rng.randint(3, args.steps - 2)
        config = write_config(args.work / f"trial{trial}", args.steps, every)
        run_dir = config.parent / "run"
        worker = train(config)
        while not any(s >= kill_at for s in logged(run_dir)):
            if worker.poll() is not None:
                raise SystemExit(f"trial {trial}: the run ended before the kill: {worker.stderr.read()[-2000:]}")
            time.sleep(0.005)
        time.sleep(rng.uniform(0, 0.4))  # anywhere in the steps that follow, saves included
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait()
        killed_after = max(logged(run_dir))
        left = leftovers(run_dir)
        state = load_trainer_state(run_dir / "checkpoints" / "last")
        if per_epoch is None and state["epoch"] > 0:
            per_epoch = (state["step"] - state["batch"]) // state["epoch"]
        resumed = train(config, "--resume", str(run_dir / "checkpoints" / "last"))
        assert resumed.wait() == 0, resumed.stderr.read()[-2000:]
        final = load_file(str(run_dir / "checkpoints" / "final" / WEIGHTS))
        equal = sum(torch.equal(final[k], reference[k]) for k in reference)
        once = logged(run_dir) == list(range(1, args.steps + 1))
        exact += equal == len(reference) and once
        print(f"| {trial} | {every} | {killed_after} | {state['step']} ({state['epoch']}, {state['batch']}) | "
              f"{', '.join(left) or '–'} | {equal}/{len(reference)} | {'yes' if once else 'NO'} | "
              f"{', '.join(leftovers(run_dir)) or '–'} |")
    print(f"\n{exact} of {args.trials} kills resumed to bit-identical weights with a clean log "
          f"({per_epoch} steps an epoch, {args.steps} steps, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()
