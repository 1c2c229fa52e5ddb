"""Models fitted without gradients: the engine's "collect" phases (PatchCore, PaDiM)."""

import json

import pytest
import torch

from defectscope.data import build_datasets
from defectscope.engine import evaluate, load_checkpoint, run
from defectscope.engine.evaluate import predict_dataset
from defectscope.models import Phase


def test_phases_are_gradient_phases_unless_told():
    assert Phase("main").kind == "train"


@pytest.mark.parametrize("model", ["patchcore", "padim"])
def test_a_collect_fit_writes_a_checkpoint_that_scores_like_the_fitted_model(tiny_config, model, tmp_path):
    cfg = tiny_config(model=model)
    result = run(cfg, evaluate_test=False)
    bundle = build_datasets(cfg.data)
    batches = -(-len(bundle.train) // cfg.data.batch_size)
    assert result.steps == batches  # one pass, every training image, no drop_last
    log = [json.loads(line) for line in (result.run_dir / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 1 and log[0]["images"] == len(bundle.train)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.calibration.image.threshold.n > 0
    a = predict_dataset(result.model, bundle.test, 8, torch.device("cpu"))
    b = predict_dataset(ckpt.model, bundle.test, 8, torch.device("cpu"))
    assert torch.allclose(torch.from_numpy(a.maps), torch.from_numpy(b.maps))
    results = evaluate(ckpt.model, bundle.test, ckpt.class_names, cfg, torch.device("cpu"), tmp_path / "eval",
                       checkpoint=ckpt.path, calibration=ckpt.calibration)
    assert 0 <= results["mean"]["image_auroc"] <= 1


def test_patchcore_bank_size_is_restored_from_the_checkpoint(tiny_config):
    result = run(tiny_config(model="patchcore"), evaluate_test=False)
    ckpt = load_checkpoint(result.checkpoint)
    bank = result.model.memory.bank
    assert 0 < len(bank) < result.model.memory.patches_seen
    assert torch.equal(ckpt.model.memory.bank, bank)
    log = json.loads((result.run_dir / "train_log.jsonl").read_text().splitlines()[0])
    assert log["bank_size"] == len(bank) and log["patches_seen"] == result.model.memory.patches_seen
