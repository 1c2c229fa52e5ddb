from pathlib import Path

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError
from defectscope.data import build_datasets
from defectscope.engine import evaluate, load_checkpoint, run
from defectscope.engine.checkpoint import save_checkpoint
from defectscope.engine.evaluate import predict_dataset


def normal_maps(rng, n, mean, spread):
    return (mean + spread * rng.standard_normal((n, *mean.shape))).astype(np.float32)


def test_the_checkpoint_carries_the_standardiser_and_applies_it(tmp_path, tiny_config):
    overrides = ["--eval.map_standardization", "position", "--data.validation_fraction", "0.5"]
    cfg = tiny_config(steps=1, overrides=overrides)
    result = run(cfg, evaluate_test=False)
    ckpt = load_checkpoint(result.checkpoint)
    assert ckpt.standardizer is not None and ckpt.standardizer.mean.shape == (1, 32, 32)
    bundle = build_datasets(cfg.data)
    # on the held-out normal images the standardised maps have mean ~0 at each position
    val = predict_dataset(ckpt.model, bundle.validation, 8, torch.device("cpu"), standardizer=ckpt.standardizer)
    assert np.abs(val.maps.mean(0)).max() < 1e-3
    assert ckpt.calibration.image.threshold.value == pytest.approx(val.image_scores.max(), rel=1e-4)
    images = torch.stack([bundle.test[i].image for i in range(2)])
    with torch.no_grad():
        raw = ckpt.model.predict(images).anomaly_map.numpy()
    scored = predict_dataset(ckpt.model, bundle.test, 8, torch.device("cpu"), standardizer=ckpt.standardizer)
    np.testing.assert_allclose(scored.maps[:2], ckpt.standardizer(raw, np.zeros(2, int)), rtol=1e-6, atol=1e-6)
    results = evaluate(ckpt.model, bundle.test, ckpt.class_names, cfg, torch.device("cpu"), tmp_path / "e",
                       standardizer=ckpt.standardizer)
    assert results["map_standardization"] == "position"
    # saved again without it, the same weights load as a plain checkpoint
    save_checkpoint(tmp_path / "plain", ckpt.model, ckpt.config, ckpt.class_names)
    assert load_checkpoint(tmp_path / "plain").standardizer is None


def test_too_few_held_out_images_stop_the_run_before_training(tiny_config):
    overrides = ["--eval.map_standardization", "position", "--data.validation_fraction", "0"]
    cfg = tiny_config(steps=1, overrides=overrides)
    with pytest.raises(ConfigError, match="at least 2 held-out normal images"):
        run(cfg, evaluate_test=False)
    assert not (cfg.output_dir and (Path(cfg.output_dir) / "checkpoints").exists())
