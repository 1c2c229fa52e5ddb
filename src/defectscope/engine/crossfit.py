"""Cross-fitted calibration: every normal training image calibrates, scored by a model that never saw it.

A hold-out of 10 % calibrates on few images (fewer than 99 cannot promise 1 %) and keeps them
from the model. For one-pass models (a memory bank, per-position Gaussians, a mean image) a fit
is one pass over the images, so K folds are affordable: fold k's model is fitted on the other
folds and scores fold k; the out-of-fold scores of all n images set the thresholds, and the
model that ships is fitted on all n. Each fold model saw (K − 1)/K of the images; a memory bank
of the same coreset share would be sparser than the shipped one, so its scores would run high and
the thresholds flag fewer good parts than promised (and catch fewer defects). So by default a
fold's bank keeps as many patches as the shipped one (`fold_bank: same_size`, through the model
config's `fitted_on_share`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from defectscope.config import ConfigError, CrossFitCalibration, RunConfig
from defectscope.data.config import Tiling
from defectscope.data.dataset import AnomalyDataset, Record, dataset_of, training_set
from defectscope.engine.calibrate import HeldOutScores
from defectscope.engine.inference import viewing_of
from defectscope.engine.predictions import predict_dataset
from defectscope.layers.feature_cache import FeatureCache
from defectscope.models.base import AnomalyModel
from defectscope.scoring.calibration import Calibration


def require_one_pass(model: AnomalyModel, cfg: RunConfig) -> None:
    """Checked before any work: cross-fitting a trained model would train it once per fold."""
    trained = [p.name for p in model.phases() if p.kind != "collect"]
    if trained:
        raise ConfigError(f"eval.calibration: cross_fit fits the model once per fold, and {cfg.model_name} trains "
                          f"by gradient steps ({', '.join(trained)}); use {{kind: hold_out}} for it")


@torch.no_grad()
def fit_one_pass(model: AnomalyModel, images: AnomalyDataset, cfg: RunConfig, device: torch.device) -> None:
    """Every collect phase over `images` (tiles when the run tiles), as training does it."""
    data = training_set(images, cfg.data)
    model.to(device).eval()
    for phase in model.phases():
        model.start_phase(phase.name)
        for batch in DataLoader(data, batch_size=cfg.data.batch_size, shuffle=False):
            model.collect(batch.image.to(device), batch.class_id.to(device), phase.name)
        model.finish_collection(phase.name)


def fold_of(records: Sequence[Record], folds: int, seed: int) -> np.ndarray:
    """Each record's fold: per class, a shuffle (seeded) dealt round-robin, so every fold holds every class."""
    assigned = np.zeros(len(records), np.int64)
    rng = np.random.default_rng(seed)
    categories = np.array([r.category for r in records])
    for category in dict.fromkeys(categories):
        members = np.flatnonzero(categories == category)
        assigned[rng.permutation(members)] = np.arange(len(members)) % folds
    return assigned


def fold_config(cfg: RunConfig, folds: int) -> RunConfig:
    """The config a fold's model is built from: the run's, its bank matched to the shipped one's size."""
    scheme = cfg.eval.calibration
    matched = getattr(cfg.model, "fitted_on_share", None)
    if not isinstance(scheme, CrossFitCalibration) or scheme.fold_bank != "same_size" or matched is None:
        return cfg
    return dataclasses.replace(cfg, model=matched((folds - 1) / folds))


def shared_feature_cache(cfg: RunConfig) -> FeatureCache | None:
    """The cache the shipped model and every fold model share (each image through the backbone once), or
    None where the run does not cross-fit, the config turns it off, or training draws random flips,
    jitter or tiles (no image would come twice)."""
    scheme = cfg.eval.calibration
    random_tiles = isinstance(cfg.data.tiling, Tiling) and cfg.data.tiling.train != "all"
    if (not isinstance(scheme, CrossFitCalibration) or scheme.feature_cache_mib == 0 or cfg.data.augment.draws
            or random_tiles):
        return None
    return FeatureCache(scheme.feature_cache_mib * 2**20)


def cross_fit_calibration(cfg: RunConfig, normals: Sequence[Record], class_names: list[str], device: torch.device,
                          build: Callable[[RunConfig], AnomalyModel],
                          cache: FeatureCache | None = None) -> tuple[Calibration, HeldOutScores]:
    """Thresholds from out-of-fold scores of every normal training image (see the module docstring),
    and those scores with their images; the fold models share `cache` (frozen features) with the shipped one."""
    scheme = cfg.eval.calibration
    assert isinstance(scheme, CrossFitCalibration)
    class_ids = {name: i for i, name in enumerate(class_names)}
    folds = fold_of(normals, min(scheme.folds, len(normals)), cfg.train.seed)
    per_fold = fold_config(cfg, len(np.unique(folds)))
    pixels, ids, seen = [], [], []
    for k in np.unique(folds):
        torch.manual_seed(cfg.train.seed + int(k))  # a coreset's random start, reproducible per fold
        model = build(per_fold)
        with model.sharing_features(cache):
            fit_one_pass(model, dataset_of([r for r, f in zip(normals, folds, strict=True) if f != k], cfg.data,
                                           class_ids, training=True), cfg, device)
            unseen = dataset_of([r for r, f in zip(normals, folds, strict=True) if f == k], cfg.data, class_ids)
            preds = predict_dataset(model, unseen, cfg.data.eval_batch_size, device, viewing=viewing_of(cfg.data))
        pixels.append(preds.pixels()[0])
        ids.append(preds.class_ids)
        seen.append(HeldOutScores.of(preds, class_names))
        del model
    held_out = HeldOutScores.join(seen)
    calibration = Calibration.fit(held_out.scores, cfg.eval.false_alarm_rate, np.concatenate(pixels),
                                  cfg.eval.pixel_false_alarm_rate, np.concatenate(ids), class_names)
    return calibration, held_out
