"""What `engine.run` refuses before any work starts (bad output folders, used folders, a changed config
on resume), how --overwrite picks what to delete, and the pieces exact resuming is built from."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError, load_config
from defectscope.data import build_datasets
from defectscope.engine import evaluate, load_checkpoint, run, save_checkpoint
from defectscope.engine.checkpoint import CheckpointError
from defectscope.engine.evaluate import UndefinedMetricWarning
from defectscope.engine.fit import EpochItems, EpochSampler, TrainLog, rng_state
from defectscope.engine.run import MARKER, RUN_OUTPUTS, RunExistsError, build_model, check_run_dir

# --------------------------------------------------------------------------- output folders


def test_a_search_that_needs_faiss_is_refused_before_any_work_without_it(tiny_config, tmp_path, monkeypatch):
    import sys

    from defectscope.models.patchcore.memory_bank import SearchUnavailable

    monkeypatch.setitem(sys.modules, "faiss", None)
    cfg = tiny_config("patchcore", overrides=["--model.search", "hnsw", "--output_dir", str(tmp_path / "hnsw")])
    with pytest.raises(SearchUnavailable, match=r"model.search 'hnsw' needs the faiss-cpu package"):
        run(cfg, evaluate_test=False)
    assert not (tmp_path / "hnsw").exists()


def test_an_output_dir_that_is_a_file_is_named(tiny_config, tmp_path):
    (tmp_path / "taken").write_text("mine")
    with pytest.raises(ConfigError, match=f"output_dir {tmp_path / 'taken'}: is a file"):
        run(tiny_config(overrides=["--output_dir", str(tmp_path / "taken")]), evaluate_test=False)


def test_an_output_dir_that_cannot_be_made_is_named(tiny_config, tmp_path):
    (tmp_path / "file").write_text("mine")
    where = tmp_path / "file" / "run"
    with pytest.raises(ConfigError, match=f"output_dir {where}: cannot write there"):
        run(tiny_config(overrides=["--output_dir", str(where)]), evaluate_test=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_dir_is_named(tiny_config, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(ConfigError, match=f"output_dir {folder}: cannot write there"):
            run(tiny_config(overrides=["--output_dir", str(folder)]), evaluate_test=False)
    finally:
        folder.chmod(0o755)


def test_a_folder_that_refuses_files_is_named(tiny_config, tmp_path, monkeypatch):
    """What a read-only folder does to a user who is not root (this test may run as root)."""
    import tempfile

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", denied)
    with pytest.raises(ConfigError, match="cannot write there \\(Permission denied\\)"):
        run(tiny_config(), evaluate_test=False)


# --------------------------------------------------------------------------- --overwrite


def fill(folder: Path, marked: bool) -> None:
    folder.mkdir(parents=True)
    for name in RUN_OUTPUTS:
        (folder / name).mkdir() if name in ("checkpoints", "gallery", "maps") else (folder / name).write_text("x")
    (folder / "notes.txt").write_text("the user's own")
    if marked:
        (folder / MARKER).write_text("")


def test_overwrite_removes_the_run_files_and_nothing_else(tmp_path):
    fill(tmp_path / "run", marked=True)
    with pytest.raises(RunExistsError, match="--overwrite"):
        check_run_dir(tmp_path / "run", overwrite=False, resume=False)
    check_run_dir(tmp_path / "run", overwrite=True, resume=False)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted([MARKER, "notes.txt"])


def test_overwrite_leaves_a_folder_defectscope_did_not_mark_alone(tmp_path):
    """A user's own config.yaml in the output folder is not a run file to delete."""
    fill(tmp_path / "run", marked=False)
    with pytest.raises(RunExistsError, match=f"no {MARKER} file says defectscope wrote them"):
        check_run_dir(tmp_path / "run", overwrite=True, resume=False)
    assert (tmp_path / "run" / "config.yaml").read_text() == "x"


# --------------------------------------------------------------------------- resume


@pytest.fixture
def resumable(tiny_config, tmp_path):
    """An untrained model saved as `checkpoints/last` with a trainer state, and its config."""
    cfg = tiny_config(overrides=["--train.checkpoint_every", "1"])
    state = {"phase_index": 0, "step": 1, "epoch": 0, "batch": 1, "steps_before": 0, "seconds": 0.0,
             "optimizers": {}, "rng": rng_state()}
    last = save_checkpoint(Path(cfg.output_dir) / "checkpoints" / "last", build_model(cfg, 1), cfg, ["mtsd"],
                           step=1, trainer_state=state)
    return cfg, last


def test_resume_names_every_setting_that_differs(resumable, tiny_config):
    _, last = resumable
    changed = tiny_config(overrides=["--train.checkpoint_every", "1", "--train.lr", "0.1", "--data.image_size", "64",
                                     "--model.num_codes", "8", "--train.epochs", "99"])
    with pytest.raises(ConfigError) as err:
        run(changed, resume=load_checkpoint(last), evaluate_test=False)
    message = str(err.value)
    for key in ("train.lr (checkpoint 0.0002, now 0.1)", "data.image_size (checkpoint 32, now 64)",
                "model.num_codes (checkpoint 16, now 8)"):
        assert key in message
    assert "train.epochs (" not in message  # more epochs only extend the run


def test_resume_may_extend_training_and_change_logging(resumable, tiny_config):
    _, last = resumable
    longer = tiny_config(steps=9, overrides=["--train.checkpoint_every", "3", "--train.log_every", "5",
                                             "--eval.save_maps", "true", "--data.num_workers", "1"])
    with pytest.raises(CheckpointError, match="optimisers"):  # past the config check, into the (fake) state
        run(longer, resume=load_checkpoint(last), evaluate_test=False)


def test_resume_from_a_final_checkpoint_is_refused_before_any_work(tiny_config, tmp_path):
    cfg = tiny_config()
    final = save_checkpoint(tmp_path / "final", build_model(cfg, 1), cfg, ["mtsd"])
    with pytest.raises(CheckpointError, match="no trainer state to resume from"):
        run(cfg, resume=load_checkpoint(final), evaluate_test=False)
    assert not Path(cfg.output_dir).exists()


def test_resume_into_another_folder_that_holds_a_run_is_refused(resumable, tmp_path):
    cfg, last = resumable
    fill(tmp_path / "other", marked=True)
    moved = dataclasses.replace(cfg, output_dir=str(tmp_path / "other"))
    with pytest.raises(RunExistsError, match="already holds"):
        run(moved, resume=load_checkpoint(last), evaluate_test=False)


def test_the_log_is_cut_back_to_the_checkpoint(tmp_path):
    path = tmp_path / "train_log.jsonl"
    lines = [{"phase": "main", "step": s} for s in (1, 2, 3, 4)] + [{"phase": "prior", "step": 1}]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"phase": "pri')  # cut by a kill
    TrainLog(path, enabled=True).truncate(["main", "prior"], phase_index=0, step=2)
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    path.write_text("".join(json.dumps(r) + "\n" for r in lines) + '{"phase": "pri')
    TrainLog(path, enabled=True).truncate(["main", "prior"], phase_index=1, step=0)
    assert len(path.read_text().splitlines()) == 4


# --------------------------------------------------------------------------- the training order


def order(sampler: EpochSampler, epoch: int, skip: int = 0) -> list[int]:
    sampler.start(epoch, skip)
    return [index for e, index in sampler if e == epoch]


def test_the_training_order_is_a_function_of_seed_and_epoch_alone():
    data = list(range(11))
    a, b = EpochSampler(data, 1, 0, seed=3), EpochSampler(data, 1, 0, seed=3)
    first = order(a, 0)
    order(a, 5)  # whatever happened before
    assert order(a, 0) == first == order(b, 0)
    assert sorted(first) == data and order(a, 1) != first and order(EpochSampler(data, 1, 0, seed=4), 0) != first
    assert order(a, 2, skip=4) == order(b, 2)[4:]
    assert len(a) == 11 - 4


def test_processes_split_each_epoch_between_them():
    data = list(range(10))
    ranks = [order(EpochSampler(data, 2, r, seed=0), 3) for r in (0, 1)]
    assert sorted(ranks[0] + ranks[1]) == data


class RandomItems(torch.utils.data.Dataset):
    """Items drawn from torch's global generator, like an augmentation without its own seed."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(3)


def test_an_items_randomness_is_fixed_and_leaves_the_global_generator_alone():
    items = EpochItems(RandomItems(), seed=0)
    torch.manual_seed(1)
    first = items[(0, 2)]
    after = torch.rand(1)
    torch.manual_seed(2)
    assert torch.equal(items[(0, 2)], first)  # same item, whatever the global state
    torch.manual_seed(1)
    items[(1, 3)]
    assert torch.equal(torch.rand(1), after)  # fetching drew nothing from the training's generator
    assert not torch.equal(items[(1, 2)], first)


# --------------------------------------------------------------------------- undefined metrics


def test_an_empty_normal_test_folder_gives_undefined_image_metrics_with_a_warning(folder_root, tmp_path):
    empty = tmp_path / "test_good"
    empty.mkdir()
    cfg = load_config(None, [
        "--data.sources", f"[{{layout: folder, root: '{folder_root}', defect_dir: defect, mask_dir: mask, "
                          f"test_good_dir: '{empty}'}}]",
        "--data.image_size", "32", "--model.name", "ae_ssim", "--model.base_channels", "4"])
    bundle = build_datasets(cfg.data)
    model = build_model(cfg, len(bundle.class_names))
    with pytest.warns(UndefinedMetricWarning, match="image_auroc: no normal test image; image_f1_max: no normal"):
        results = evaluate(model, bundle.test, bundle.class_names, cfg, torch.device("cpu"), tmp_path / "eval")
    name = bundle.class_names[0]
    assert np.isnan(results["categories"][name]["image_f1_max"])  # not the 1.0 that flagging everything gets
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["categories"][name]["image_f1_max"] is None and saved["mean"]["image_auroc"] is None
    assert 0 <= saved["categories"][name]["pixel_auroc"] <= 1  # defective images still have normal pixels
    assert saved["undefined"] == {name: {metric: "no normal test image"
                                         for metric in ("image_auroc", "image_f1_max", "catch_1pct", "catch_5pct")}}
    table = (tmp_path / "eval" / "results.md").read_text()
    assert f"| {name} | – | " in table and "no normal test image" in table
