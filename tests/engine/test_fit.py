import json

import pytest
import torch

from defectscope.data import build_datasets
from defectscope.engine import evaluate, load_checkpoint, run
from defectscope.engine.evaluate import METRIC_NAMES
from defectscope.engine.run import RunExistsError


def state_digest(model):
    return torch.cat([v.float().flatten() for v in model.state_dict().values()])


def test_fit_writes_a_final_checkpoint_that_reloads_to_the_same_model(tiny_config):
    cfg = tiny_config(steps=3)
    result = run(cfg, evaluate_test=False)
    assert result.steps == 3
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.config == cfg
    assert ckpt.class_names == ["mtsd"]
    assert ckpt.calibration.image.threshold.n > 0
    assert torch.equal(state_digest(ckpt.model), state_digest(result.model))
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3]
    assert all("main/loss" in r and "perplexity" in r for r in log)
    health = json.loads((result.run_dir / "train_summary.json").read_text())["health"]
    assert {"heldout_loss", "mean_image_loss", "warnings"} <= set(health)
    assert (result.run_dir / "config.yaml").is_file()


def test_a_finished_run_is_not_overwritten_by_accident(tiny_config):
    cfg = tiny_config(steps=1)
    first = run(cfg, evaluate_test=False)
    before = (first.checkpoint / "model.safetensors").read_bytes()
    with pytest.raises(RunExistsError, match="--overwrite"):
        run(tiny_config(steps=2), evaluate_test=False)
    assert (first.checkpoint / "model.safetensors").read_bytes() == before
    assert run(tiny_config(steps=2), overwrite=True, evaluate_test=False).steps == 2


def test_training_is_reproducible_with_a_seed(tiny_config):
    a = run(tiny_config(steps=2, name="a"), evaluate_test=False)
    b = run(tiny_config(steps=2, name="b"), evaluate_test=False)
    c = run(tiny_config(steps=2, name="c", overrides=["--train.seed", "7"]), evaluate_test=False)
    assert torch.equal(state_digest(a.model), state_digest(b.model))
    assert not torch.equal(state_digest(a.model), state_digest(c.model))


def test_training_changes_the_weights_and_lowers_the_loss(tiny_config):
    result = run(tiny_config(model="ae_ssim", steps=30, overrides=["--train.lr", "0.003"]), evaluate_test=False)
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    first = sum(r["main/loss"] for r in log[:5]) / 5
    last = sum(r["main/loss"] for r in log[-5:]) / 5
    assert last < first


def test_periodic_checkpoint_and_resume_continue_the_step_count(tiny_config):
    cfg = tiny_config(steps=4, overrides=["--train.checkpoint_every", "2"])
    first = run(cfg, evaluate_test=False)
    last = first.run_dir / "checkpoints" / "last"
    assert (last / "trainer_state.pt").is_file()
    longer = tiny_config(steps=6, overrides=["--train.checkpoint_every", "2"])
    resumed = run(longer, resume=load_checkpoint(last), evaluate_test=False)
    assert resumed.steps == 6
    log = [json.loads(line) for line in (resumed.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log][-2:] == [5, 6]
    assert not torch.equal(state_digest(resumed.model), state_digest(first.model))


def test_evaluate_writes_every_metric_per_category_and_mean(tiny_config, tmp_path):
    cfg = tiny_config(steps=2)
    result = run(cfg, evaluate_test=False)
    bundle = build_datasets(cfg.data)
    results = evaluate(result.model, bundle.test, bundle.class_names, cfg, torch.device("cpu"), tmp_path / "eval")
    assert set(results["categories"]) == {"mtsd"}
    for name in METRIC_NAMES:
        assert 0.0 <= results["categories"]["mtsd"][name] <= 1.0
        assert name in results["mean"]
    assert results["images_per_second"] > 0 and results["peak_rss_mib"] > 0
    assert results["environment"]["torch"] == torch.__version__
    saved = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert saved["num_test_images"] == len(bundle.test)
    assert "| mtsd |" in (tmp_path / "eval" / "results.md").read_text()
