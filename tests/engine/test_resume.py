"""Crashes and resumes: a run killed at any moment resumes to the weights of a run never interrupted.

The tiny runs have 7 training images in batches of 2 (3 steps an epoch), so kills land inside
epochs as well as at their ends; every run trains STEPS steps.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from defectscope.cli.main import main
from defectscope.config import load_config
from defectscope.engine import load_checkpoint, run
from defectscope.engine.checkpoint import WEIGHTS, load_trainer_state
from helpers.runs import tiny_config_text

STEPS = 12
WORKER = Path(__file__).with_name("crash_worker.py")


def write_config(mtsd_root: Path, folder: Path, every: int) -> Path:
    text = tiny_config_text(mtsd_root, folder / "run", "vq_e", STEPS)
    text = text.replace("batch_size: 4", "batch_size: 2").replace("train:\n", f"train:\n  checkpoint_every: {every}\n")
    path = folder / "run.yaml"
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def reference(mtsd_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """The weights of the run never interrupted (no periodic checkpoints at all)."""
    folder = tmp_path_factory.mktemp("reference")
    result = run(load_config(write_config(mtsd_root, folder, 0)), evaluate_test=False)
    assert result.steps == STEPS
    assert result.bundle.train and len(result.bundle.train) == 7  # 3 steps an epoch, as the kills assume
    return load_file(str(result.checkpoint / WEIGHTS))


def start_worker(config: Path, mode: str = "none", n: int = 0) -> subprocess.Popen:
    # the same thread count as this process: CPU kernels split sums by thread, and another split
    # rounds differently, so bit-identical weights need the same count on both sides of the kill
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, str(WORKER), str(config), mode, str(n)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def logged_steps(run_dir: Path) -> list[int]:
    log = run_dir / "train_log.jsonl"
    steps = []
    for line in log.read_text().splitlines() if log.is_file() else []:
        try:
            steps.append(json.loads(line)["step"])
        except ValueError:  # the line the kill cut short
            pass
    return steps


def leftovers(run_dir: Path) -> list[str]:
    """Temporary files and folders of a save or a write (named .NAME.* or *.tmp)."""
    return sorted(str(p.relative_to(run_dir)) for p in run_dir.rglob("*")
                  if p.name.endswith(".tmp") or p.name.startswith((".last.", ".final.")))


def resume_and_compare(config: Path, reference: dict[str, torch.Tensor]) -> dict:
    """After a kill: the last checkpoint is whole, the resumed run ends where the reference did."""
    run_dir = config.parent / "run"
    last = run_dir / "checkpoints" / "last"
    state = load_trainer_state(last)  # whole, and checked against its digest
    position = {k: state[k] for k in ("phase_index", "steps_before", "step", "epoch", "batch")}
    assert load_checkpoint(last).step == position["steps_before"] + position["step"]
    assert main(["train", str(config), "--resume", str(last), "--no-test"]) == 0
    final = load_file(str(run_dir / "checkpoints" / "final" / WEIGHTS))
    assert final.keys() == reference.keys()
    differ = [k for k in reference if not torch.equal(final[k], reference[k])]
    assert differ == [], f"{len(differ)} of {len(reference)} tensors differ after resuming at {position}"
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))  # none lost, none twice
    assert leftovers(run_dir) == []
    return position


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_run_killed_at_a_random_step_resumes_to_the_same_weights(mtsd_root, tmp_path, reference, seed):
    rng = random.Random(seed)
    every, kill_at = rng.choice([1, 2]), rng.randint(3, STEPS - 3)  # a checkpoint exists by step 3
    config = write_config(mtsd_root, tmp_path, every)
    worker = start_worker(config)
    deadline = time.monotonic() + 300
    while not any(s >= kill_at for s in logged_steps(tmp_path / "run")):
        assert worker.poll() is None, worker.stderr.read()[-3000:]
        assert time.monotonic() < deadline, "the worker never reached the step to kill it at"
        time.sleep(0.01)
    worker.send_signal(signal.SIGKILL)
    worker.communicate(timeout=60)
    assert worker.returncode == -signal.SIGKILL
    assert max(logged_steps(tmp_path / "run")) < STEPS  # killed during training, not after it
    resume_and_compare(config, reference)


@pytest.mark.parametrize(("mode", "save"), [("write", 5), ("swap", 6)])
def test_a_run_killed_inside_a_save_resumes_from_the_checkpoint_before(mtsd_root, tmp_path, reference, mode, save):
    """Killed with the new checkpoint half written, or half swapped in: the previous one is used."""
    config = write_config(mtsd_root, tmp_path, 1)
    worker = start_worker(config, mode, save)
    _, err = worker.communicate(timeout=300)
    assert worker.returncode == -signal.SIGKILL, err[-3000:]
    position = resume_and_compare(config, reference)
    assert position["step"] == save - 1
    assert position["batch"] != 0  # the checkpoint before is inside an epoch (steps 4 and 5 of 3-step epochs)


def test_loader_workers_change_nothing_in_training(tiny_config):
    """Why a resumed run may change data.num_workers: order and augmentation do not depend on it."""
    common = ["--data.batch_size", "2", "--data.augment.brightness", "0.3", "--data.augment.vflip", "true"]
    alone = run(tiny_config(steps=4, overrides=common, name="alone"), evaluate_test=False)
    workers = run(tiny_config(steps=4, overrides=[*common, "--data.num_workers", "2"], name="workers"),
                  evaluate_test=False)
    for (name, a), b in zip(alone.model.state_dict().items(), workers.model.state_dict().values(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.slow
def test_a_two_phase_model_resumes_exactly_from_a_checkpoint_in_either_phase(tiny_config, monkeypatch):
    """PVQAE trains its network, then its prior: resume inside each, and at the hand-over between them."""
    import importlib
    import shutil

    fit_module = importlib.import_module("defectscope.engine.fit")
    overrides = ["--data.batch_size", "2", "--train.checkpoint_every", "1"]
    reference = tiny_config(model="pvqae", steps=4, overrides=overrides, name="reference")
    copies = []
    save_last = fit_module._save_last

    def keep_a_copy(loop, optimizers, at):
        save_last(loop, optimizers, at)
        copy = loop.run_dir.parent / f"copy{len(copies)}"
        copies.append(shutil.copytree(loop.run_dir / "checkpoints" / "last", copy))

    monkeypatch.setattr(fit_module, "_save_last", keep_a_copy)
    expected = run(reference, evaluate_test=False).model.state_dict()
    monkeypatch.setattr(fit_module, "_save_last", save_last)
    phases = [load_trainer_state(c)["phase_index"] for c in copies]
    assert phases.count(0) == 5 and phases.count(1) == 4  # 4 steps and the phase's end, then 3 prior steps and its end
    for i in (1, 4, 6):  # inside the main phase, at its end, inside the prior's
        cfg = tiny_config(model="pvqae", steps=4, overrides=overrides, name=f"resumed{i}")
        shutil.copytree(copies[i], Path(cfg.output_dir) / "checkpoints" / "last")
        resumed = run(cfg, resume=load_checkpoint(Path(cfg.output_dir) / "checkpoints" / "last"), evaluate_test=False)
        for name, value in resumed.model.state_dict().items():
            assert torch.equal(value, expected[name]), f"resumed from copy {i}: {name}"


def test_a_run_killed_inside_its_first_save_says_to_start_again_and_that_works(mtsd_root, tmp_path, reference,
                                                                               capsys):
    """Nothing to resume from: --resume names the command that starts again, and that command works."""
    config = write_config(mtsd_root, tmp_path, 1)
    worker = start_worker(config, "write", 1)
    _, err = worker.communicate(timeout=300)
    assert worker.returncode == -signal.SIGKILL, err[-3000:]
    run_dir = tmp_path / "run"
    last = run_dir / "checkpoints" / "last"
    assert not last.exists() and leftovers(run_dir)  # only the first save's temporary folder
    assert main(["train", str(config), "--resume", str(last), "--no-test"]) == 2
    message = capsys.readouterr().err
    command = f"defectscope train {run_dir / 'config.yaml'} --overwrite"
    assert "no complete checkpoint" in message and f"`{command}`" in message and "Traceback" not in message
    assert main([*command.split()[1:], "--no-test"]) == 0
    final = load_file(str(run_dir / "checkpoints" / "final" / WEIGHTS))
    assert [k for k in reference if not torch.equal(final[k], reference[k])] == []
    assert logged_steps(run_dir) == list(range(1, STEPS + 1))
    assert leftovers(run_dir) == []
