"""Scoring a dataset with a model: every image's score and map, in dataset order, on the CPU."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from defectscope.data.config import MAX_IMAGE_PIXELS
from defectscope.data.geometry import Box, valid_mask
from defectscope.data.image_io import load_mask
from defectscope.engine.inference import torch_network
from defectscope.models.base import AnomalyModel
from defectscope.scoring.path import MapStandardizer, Viewing, restore_map, score_canvases

Resolution = Literal["model", "original"]


@dataclass
class Predictions:
    """Everything scored on a dataset, in dataset order, on the CPU.

    Maps of different sizes (images kept at their own size, or brought back to it) are stored
    top-left in arrays of the largest size; `valid` marks each image's own pixels there, and is
    None when every pixel of every map is an image pixel.
    """

    image_scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)
    paths: list[str]
    model_seconds: float  # time spent scoring (model, tiling, stitching)
    valid: np.ndarray | None = None  # (N, H, W) bool

    def pixels(self, pick: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(scores, mask values) of the image pixels of the picked images, flattened."""
        maps, masks = (self.maps, self.masks) if pick is None else (self.maps[pick], self.masks[pick])
        if self.valid is None:
            return maps.ravel(), masks.ravel()
        valid = self.valid if pick is None else self.valid[pick]
        return maps[valid], masks[valid]


    def one(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(map, mask) of one image, cut to its own pixels."""
        m, g = self.maps[index], self.masks[index]
        if self.valid is None:
            return m, g
        rows, cols = np.flatnonzero(self.valid[index].any(1)), np.flatnonzero(self.valid[index].any(0))
        if not len(rows):
            return m[:0, :0], g[:0, :0]
        cut = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
        return m[cut], g[cut]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _pack(arrays: list[np.ndarray], dtype: type) -> np.ndarray:
    """Same-size arrays stacked; otherwise each top-left in the largest size, zero (False) around it."""
    if not arrays:
        return np.zeros((0, 1, 1), dtype)
    height, width = max(a.shape[0] for a in arrays), max(a.shape[1] for a in arrays)
    out = np.zeros((len(arrays), height, width), dtype)
    for i, a in enumerate(arrays):
        out[i, : a.shape[0], : a.shape[1]] = a
    return out


def _original_mask(dataset: Dataset, index: int, size: tuple[int, int]) -> np.ndarray:
    records = getattr(dataset, "records", None)
    mask_path = records[index].mask_path if records is not None else None
    if mask_path is None:
        return np.zeros(size, bool)
    return load_mask(mask_path, getattr(dataset, "max_image_pixels", MAX_IMAGE_PIXELS))[0].numpy() > 0.5


@torch.no_grad()
def predict_dataset(
    model: AnomalyModel,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    keep_maps: bool = True,
    standardizer: MapStandardizer | None = None,
    viewing: Viewing | None = None,
    resolution: Resolution = "model",
) -> Predictions:
    """Score `dataset` through the scoring path (`defectscope.scoring.path`); restores the model's mode.

    `resolution`: "model" keeps maps and masks at the working size, the border (keep_aspect)
    marked invalid; "original" brings each map back to its image's size as read (border
    dropped, bilinear) and compares it with the mask as drawn, read again from its file.
    """
    viewing = viewing or Viewing()
    was_training = model.training
    model.eval().to(device)
    network = torch_network(model, device)
    # tiles are batched, not images: one image at a time keeps memory to one image and its map
    tiled = viewing.tiling is not None
    # samples stay a list (images may differ in size); the model's batches are stacked by infer
    loader = DataLoader(dataset, batch_size=1 if tiled else batch_size, shuffle=False, collate_fn=list)
    scores, maps, masks, valids, labels, class_ids, paths = [], [], [], [], [], [], []
    seconds = 0.0
    index = 0
    for items in loader:
        images, batch_masks = [s.image.numpy() for s in items], [s.mask for s in items]
        batch_class, batch_labels = np.array([s.class_id for s in items], np.int64), [s.label for s in items]
        batch_paths, batch_boxes = [s.path for s in items], [s.box for s in items]
        sizes = [s.original_size for s in items]
        boxes = [Box(*(int(v) for v in b)) for b in batch_boxes]
        _sync(device)
        began = time.perf_counter()
        out_maps, out_scores = score_canvases(network, images, boxes, batch_class, viewing, batch_size, standardizer)
        _sync(device)
        seconds += time.perf_counter() - began
        scores.append(out_scores)
        for anomaly_map, mask, box, size in zip(out_maps, batch_masks, boxes, sizes, strict=True):
            if not keep_maps:
                break
            if resolution == "original":
                original = (int(size[0]), int(size[1]))
                maps.append(restore_map(anomaly_map, box, original))
                masks.append(_original_mask(dataset, index, original))
                valids.append(np.ones(original, bool))
            else:
                maps.append(anomaly_map)
                masks.append(mask[0].bool().numpy())
                valids.append(valid_mask(tuple(anomaly_map.shape), box).numpy())
            index += 1
        labels.append(np.asarray(batch_labels))
        class_ids.append(np.asarray(batch_class))
        paths.extend(batch_paths)
    model.train(was_training)
    packed_maps, packed_masks, packed_valid = _pack(maps, np.float32), _pack(masks, bool), _pack(valids, bool)
    valid = None if packed_valid.all() else packed_valid
    return Predictions(
        image_scores=np.concatenate(scores) if scores else np.zeros(0, np.float32),
        maps=packed_maps,
        masks=packed_masks,
        labels=np.concatenate(labels) if labels else np.zeros(0, int),
        class_ids=np.concatenate(class_ids) if class_ids else np.zeros(0, int),
        paths=paths,
        model_seconds=seconds,
        valid=valid,
    )
