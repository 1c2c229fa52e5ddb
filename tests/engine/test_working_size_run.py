"""`data.image_size: auto` through a run: resolved once, recorded everywhere, scored at that size."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from PIL import Image

from defectscope.config import ConfigError, config_from_yaml, config_to_yaml, load_config
from defectscope.data.config import AutoSize
from defectscope.engine import run
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.detector import Detector
from defectscope.engine.presets import folder_config
from defectscope.engine.working_size import resolve_working_size

AUTO = "{kind: auto, pixels: 4800, multiple: 8}"  # 300 × 1000 parts: aspect 0.3 → 40 × 128 px


@pytest.fixture(scope="module")
def parts(tmp_path_factory):
    root = tmp_path_factory.mktemp("parts")
    rng = np.random.default_rng(0)
    for folder in ("good", "test_good", "bad", "masks"):
        (root / folder).mkdir()
    for folder, count in (("good", 10), ("test_good", 3)):
        for i in range(count):
            Image.fromarray(np.clip(120 + rng.normal(0, 4, (300, 1000, 3)), 0, 255).astype(np.uint8)) \
                .save(root / folder / f"{i:03d}.png")
    for i in range(3):
        image = np.clip(120 + rng.normal(0, 4, (300, 1000, 3)), 0, 255).astype(np.uint8)
        image[100:160, 700:760] = 250
        mask = np.zeros((300, 1000), np.uint8)
        mask[100:160, 700:760] = 255
        Image.fromarray(image).save(root / "bad" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    return root


def _config(tmp_path, root, *extra, size=AUTO):
    return load_config(None, [
        "--model.name=mean_image", "--model.smoothing_sigma=1",
        f"--data.sources=[{{layout: folder, root: {root}, defect_dir: bad, mask_dir: masks, "
        "test_good_dir: test_good}]",
        f"--data.image_size={size}", "--data.batch_size=4", "--data.eval_batch_size=4",
        "--data.validation_fraction=0.2", "--data.augment={hflip: false}", "--train.progress=false",
        "--eval.bootstrap_resamples=20", f"--output_dir={tmp_path / 'run'}", *extra,
    ])


@pytest.fixture(scope="module")
def auto_run(tmp_path_factory, parts):
    return run(_config(tmp_path_factory.mktemp("auto"), parts))


def test_the_run_resolves_auto_once_and_records_it(auto_run, capsys):
    assert auto_run.config.data.image_size == (40, 128)
    saved = config_from_yaml((auto_run.run_dir / "config.yaml").read_text(), "config.yaml")
    assert saved.data.image_size == (40, 128)
    assert load_checkpoint(auto_run.checkpoint).config.data.image_size == (40, 128)
    summary = json.loads((auto_run.run_dir / "train_summary.json").read_text())
    assert summary["working_size"]["height"] == 40 and summary["working_size"]["aspect"] == pytest.approx(0.3)
    results = json.loads((auto_run.run_dir / "results.json").read_text())
    assert results["geometry"]["image_size"] == [40, 128] and results["geometry"]["auto"]["images"] == 10
    assert "auto: the median height/width 0.3 of 10 training images" in (auto_run.run_dir / "results.md").read_text()


def test_the_detector_scores_at_the_resolved_size_and_maps_back(auto_run, parts):
    detector = Detector.from_checkpoint(auto_run.checkpoint)
    found = detector.score([np.asarray(Image.open(parts / "bad" / "000.png"))])[0]
    assert found.anomaly_map.shape == (300, 1000)
    y, x = np.unravel_index(np.argmax(found.anomaly_map), found.anomaly_map.shape)
    assert 90 <= y < 170 and 690 <= x < 770


def test_resolving_again_gives_the_same_size_so_a_resume_matches(tmp_path, parts):
    cfg = _config(tmp_path, parts)
    first, _ = resolve_working_size(cfg)
    second, _ = resolve_working_size(cfg)
    assert first == second and first.data.image_size == (40, 128)
    explicit = _config(tmp_path, parts, size="[64, 64]")
    assert resolve_working_size(explicit) == (explicit, None)  # an explicit size wins


def test_checks_that_need_the_size_run_on_the_resolved_one(tmp_path, parts):
    # σ = 20 at 256 px is 10 px on a 128 px wide map, a ±40 px kernel: fits 256², not the 40 px short side
    cfg = _config(tmp_path, parts, "--model.smoothing_sigma=20")
    with pytest.raises(ConfigError, match="smoothing_sigma"):
        resolve_working_size(cfg)


def test_the_folder_workflow_defaults_to_auto(tmp_path, parts):
    cfg = folder_config(parts / "good", "padim", tmp_path / "run")
    assert cfg.data.image_size == AutoSize()
    assert folder_config(parts / "good", "padim", tmp_path / "run",
                         ["--data.image_size", "128"]).data.image_size == 128


def test_a_resume_keeps_the_checkpoints_size_when_the_images_changed(tmp_path, parts, monkeypatch):
    import sys

    from defectscope.engine.checkpoint import Checkpoint

    engine_run = sys.modules["defectscope.engine.run"]  # the module: `defectscope.engine.run` names the function
    cfg = _config(tmp_path, parts)
    saved = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=(48, 112)))
    resume = Checkpoint(model=None, config=saved, class_names=[])
    seen = {}

    def stop(cfg, *args, **kwargs):  # what the run would go on with, before any work
        seen["size"] = cfg.data.image_size
        raise RuntimeError("stop here")

    monkeypatch.setattr(engine_run, "resume_differences", stop)
    with pytest.raises(RuntimeError, match="stop here"):
        run(cfg, resume=resume)
    assert seen["size"] == (48, 112)  # not the [40, 128] the images call for now


def test_a_benchmark_cell_is_stale_when_the_auto_budget_changes(tmp_path, parts, monkeypatch):
    import sys

    import defectscope.benchmark.runner  # noqa: F401 - loads the module

    runner = sys.modules["defectscope.benchmark.runner"]
    done = tmp_path / "cells" / "cell"
    done.mkdir(parents=True)
    resolved, _ = resolve_working_size(_config(tmp_path, parts))  # the cell ran at [40, 128]
    (done / "config.yaml").write_text(config_to_yaml(resolved))
    (done / "cell.json").write_text("{}")
    cell = type("Cell", (), {"id": "cell"})()
    for size, stale in ((AUTO, []), ("{kind: auto, pixels: 9600, multiple: 8}", ["cell"]), ("[40, 128]", [])):
        monkeypatch.setattr(runner, "cell_config", lambda suite, cell, output, size=size: dataclasses.replace(
            _config(tmp_path, parts, size=size), output_dir=str(output)))
        assert runner.stale_cells(None, tmp_path, [cell]) == stale, size
