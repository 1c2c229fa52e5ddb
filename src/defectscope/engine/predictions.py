"""Scoring a dataset with a model: every image's score and map, in dataset order, on the CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from defectscope.engine.standardize import MapStandardizer
from defectscope.models.base import AnomalyModel


@dataclass
class Predictions:
    """Everything scored on a dataset, in dataset order, on the CPU."""

    image_scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)
    paths: list[str]
    model_seconds: float  # time spent inside model.predict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict_dataset(
    model: AnomalyModel,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    keep_maps: bool = True,
    standardizer: MapStandardizer | None = None,
) -> Predictions:
    """Run `model.predict` (then the standardiser, if any) over `dataset`; restores the model's mode."""
    was_training = model.training
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    scores, maps, masks, labels, class_ids, paths = [], [], [], [], [], []
    seconds = 0.0
    for batch in loader:
        images = batch.image.to(device)
        _sync(device)
        began = time.perf_counter()
        out = model.predict(images, batch.class_id.to(device))
        if standardizer is not None:
            out = standardizer(out, batch.class_id)
        _sync(device)
        seconds += time.perf_counter() - began
        scores.append(out.image_score.float().cpu().numpy())
        if keep_maps:
            maps.append(out.anomaly_map.float().cpu().numpy())
            masks.append(batch.mask[:, 0].bool().numpy())
        labels.append(np.asarray(batch.label))
        class_ids.append(np.asarray(batch.class_id))
        paths.extend(batch.path)
    model.train(was_training)
    empty = np.zeros((0, 1, 1), np.float32)
    return Predictions(
        image_scores=np.concatenate(scores) if scores else np.zeros(0, np.float32),
        maps=np.concatenate(maps) if maps else empty,
        masks=np.concatenate(masks) if masks else empty.astype(bool),
        labels=np.concatenate(labels) if labels else np.zeros(0, int),
        class_ids=np.concatenate(class_ids) if class_ids else np.zeros(0, int),
        paths=paths,
        model_seconds=seconds,
    )
