"""engine.run, the one entry point: train evaluates the model in memory; test on the saved
checkpoint gives the same figures; the contract keeps no state between training steps."""

import json

import pytest
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from defectscope.engine import load_checkpoint, run
from defectscope.engine.checkpoint import CheckpointError


def test_train_scores_the_model_in_memory_and_test_on_its_checkpoint_agrees(tiny_config, tmp_path, monkeypatch):
    import defectscope.engine.checkpoint as checkpoint_module

    cfg = tiny_config(model="pvqae", steps=2)
    reads = []
    real = checkpoint_module.load_file
    monkeypatch.setattr(checkpoint_module, "load_file", lambda *a, **k: reads.append(a) or real(*a, **k))
    trained = run(cfg)
    assert reads == []  # nothing was read back from disk to evaluate
    monkeypatch.undo()
    tested = run(cfg, weights=load_checkpoint(trained.checkpoint), output_dir=tmp_path / "test")
    for key in ("categories", "mean", "calibration"):
        assert tested.results[key] == trained.results[key], key
    on_disk = json.loads((tmp_path / "test" / "results.json").read_text())
    assert on_disk["categories"] == json.loads((trained.run_dir / "results.json").read_text())["categories"]


def test_a_checkpoint_of_the_old_format_is_a_clear_version_error(tiny_config, tmp_path):
    trained = run(tiny_config(steps=1), evaluate_test=False)
    weights = trained.checkpoint / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        metadata = dict(f.metadata())
    old = tmp_path / "old" / "model.safetensors"
    old.parent.mkdir()
    save_file(load_file(str(weights)), str(old), metadata={**metadata, "format": "defectscope-checkpoint/1"})
    with pytest.raises(CheckpointError, match="another version of defectscope"):
        load_checkpoint(old.parent)
