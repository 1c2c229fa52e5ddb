from pathlib import Path

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError
from defectscope.data import build_datasets
from defectscope.engine import evaluate, load_checkpoint, run
from defectscope.engine.checkpoint import save_checkpoint
from defectscope.engine.evaluate import predict_dataset
from defectscope.engine.standardize import STD_FLOOR, MapStandardizer
from defectscope.models.base import ModelOutput


def normal_maps(rng, n, mean, spread):
    return (mean + spread * rng.standard_normal((n, *mean.shape))).astype(np.float32)


def test_fit_matches_numpy_per_class_and_pools_for_a_class_without_images():
    rng = np.random.default_rng(0)
    maps = rng.random((10, 4, 5)).astype(np.float32)
    classes = np.array([0] * 6 + [1] * 4)
    std = MapStandardizer.fit(maps, classes, num_classes=3)
    assert std.mean.shape == std.std.shape == (3, 4, 5)
    np.testing.assert_allclose(std.mean[0], maps[:6].mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.std[1], maps[6:].std(0), rtol=1e-5)
    np.testing.assert_allclose(std.mean[2], maps.mean(0), rtol=1e-5)  # class 2 has no held-out images


def test_constant_positions_get_a_floor_instead_of_a_zero_divisor():
    maps = np.zeros((5, 3, 3), np.float32)
    maps[:, 1, 1] = [0.0, 1.0, 2.0, 3.0, 4.0]  # only the centre varies; elsewhere exactly 0
    std = MapStandardizer.fit(maps, np.zeros(5, int), 1)
    floor = STD_FLOOR * maps.std()
    assert torch.allclose(std.std[0, 0, 0], torch.tensor(floor))
    assert std.std[0, 1, 1] > floor
    out = std(ModelOutput(torch.ones(1, 3, 3), torch.ones(1)), None)
    assert torch.isfinite(out.anomaly_map).all()


def test_a_small_bump_where_normals_are_calm_beats_a_large_one_where_they_vary():
    """The reason the option exists: raw maxima sit where normal images vary most."""
    rng = np.random.default_rng(1)
    mean = np.zeros((8, 8))
    spread = np.full((8, 8), 0.01)
    spread[0, :] = 1.0  # a noisy border row on every normal image
    std = MapStandardizer.fit(normal_maps(rng, 200, mean, spread), np.zeros(200, int), 1)
    test = torch.zeros(2, 8, 8)
    test[0, 0, 3] = 1.5  # normal image: within the border's usual range
    test[1, 5, 5] = 0.2  # defect: small, but far outside what is usual there
    raw_scores = test.flatten(1).amax(1)
    out = std(ModelOutput(test, raw_scores), torch.zeros(2, dtype=torch.long))
    assert raw_scores[0] > raw_scores[1]
    assert out.image_score[1] > out.image_score[0]
    assert out.anomaly_map[1].argmax() == 5 * 8 + 5
    assert torch.allclose(out.image_score, out.anomaly_map.flatten(1).amax(1))


def test_each_image_uses_its_own_class_statistics():
    maps = np.concatenate([np.zeros((4, 2, 2)), np.full((4, 2, 2), 10.0)]).astype(np.float32)
    maps += np.random.default_rng(2).normal(0, 0.1, maps.shape).astype(np.float32)
    std = MapStandardizer.fit(maps, np.array([0] * 4 + [1] * 4), 2)
    out = std(ModelOutput(torch.full((2, 2, 2), 10.0), torch.zeros(2)), torch.tensor([0, 1]))
    assert out.image_score[0] > 20 and abs(out.image_score[1]) < 5


def test_a_map_of_another_size_is_refused():
    std = MapStandardizer.fit(np.random.default_rng(0).random((3, 4, 4)), np.zeros(3, int), 1)
    with pytest.raises(ValueError, match=r"fitted on \(4, 4\)"):
        std(ModelOutput(torch.zeros(1, 8, 8), torch.zeros(1)), None)


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
    assert ckpt.calibration["image_threshold"] == pytest.approx(val.image_scores.max(), rel=1e-4)
    images = torch.stack([bundle.test[i].image for i in range(2)])
    raw, scored = ckpt.model.predict(images), ckpt.predict(images)
    assert torch.allclose(scored.anomaly_map, ckpt.standardizer(raw, None).anomaly_map)
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
