"""The one scoring path after the network: tiles, stitching, border, standardisation, image score, verdict.

The torch model and the exported ONNX graph compute the same thing — the network's anomaly map
(smoothing included) and its own image score for a batch of working-size images or tiles — and
everything after it happens here, in numpy, for both: evaluation and calibration
(`engine.predictions`), the torch `Detector`, and the onnxruntime `OnnxDetector`. So a tiled,
bordered or standardised model scores the same whichever runtime runs its network.

- Whole images go to the network in batches; with tiling, each image is cut into its grid of
  tiles, the tiles go to the network in batches, and their maps are stitched into one map.
- Where an image has a border (keep_aspect, or a small image padded to a tile), the border takes
  the lowest score of the image's own pixels, so it never shows in a map.
- The image score is the network's own (PVQAE's product, PatchCore's reweighting, …) when the
  network saw the whole image stretched; otherwise the maximum of the map over the image's own
  pixels, the only score a stitched or bordered map has. With a map standardiser, the z-scored
  map's maximum over the image's own pixels.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from defectscope.geometry import Box, Merge, Resize, as_hw, tile_grid
from defectscope.scoring.detection import CalibratedClasses, Detection, detection_from, image_array
from defectscope.scoring.resize import fit_array, resize_map

__all__ = ["MapStandardizer", "Network", "ScoringPath", "TileGrid", "Viewing", "canvas_tiles", "restore_map",
           "score_canvases"]

# (B, 3, h, w) float32 images (or tiles) in [0, 1] and (B,) int64 class ids → (B, h, w) maps, (B,) scores
Network = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]

# models whose exported graph runs one image (or tile) per call whatever the batch: PatchCore's
# graph searches its bank exactly, holding a block of distances per image, so a batch of 8 needs 8
# times the memory and is no faster (MTSD, 1 % bank: onnxruntime 4x the memory; docs/results/speed.md).
# A torch model says it itself (`AnomalyModel.images_per_call`: PatchCore with HNSW takes a few).
ONE_IMAGE_PER_CALL = ("patchcore",)

# a position where normal maps hardly vary (a constant border, or an exact zero of a product
# score) would divide by ~0; the floor is this share of the spread over all positions
STD_FLOOR = 0.01


@dataclass(frozen=True)
class TileGrid:
    """Square tiles `stride` apart, the last row and column flush with the edge; overlaps merged."""

    tile: int
    stride: int
    merge: Merge = "mean"


@dataclass(frozen=True)
class Viewing:
    """How the network looks at an image: the working size, the resize to it, whole or by tiles."""

    size: tuple[int, int] | None = None  # (height, width); None with resize "none"
    resize: Resize = "stretch"
    tiling: TileGrid | None = None

    @property
    def own_score(self) -> bool:
        """The network's own image score stands only when it saw the whole image, stretched (no border)."""
        return self.tiling is None and self.resize == "stretch"

    @classmethod
    def of(cls, image_size: int | Sequence[int], resize: Resize, tiling: TileGrid | None) -> Viewing:
        return cls(as_hw(image_size) if resize != "none" else None, resize, tiling)


@dataclass(frozen=True)
class MapStandardizer:
    """Per class and position, the mean and spread of held-out normal maps: `eval.map_standardization: position`.

    A reconstruction model's error is largest where normal images themselves vary (tile borders,
    bright or textured regions), so the raw map's maximum often sits on normal structure.
    Dividing each pixel's score, less its mean there, by how much it varies at that position on
    normal images lets a defect stand out against what is usual at its place.
    """

    mean: np.ndarray  # (C, H, W) float32
    std: np.ndarray  # (C, H, W) float32, floored

    @classmethod
    def fit(cls, maps: np.ndarray, class_ids: np.ndarray, num_classes: int) -> MapStandardizer:
        """maps (N, H, W) and class ids (N,) of held-out normal images; a class with fewer than two
        held-out images gets the statistics of all classes pooled."""
        if len(maps) < 2:
            raise ValueError(f"map standardisation needs at least 2 held-out normal maps, got {len(maps)}")
        maps64 = np.asarray(maps, dtype=np.float64)
        class_ids = np.asarray(class_ids)
        means, stds = [], []
        for c in range(num_classes):
            pick = class_ids == c
            normal = maps64[pick] if pick.sum() >= 2 else maps64
            floor = max(STD_FLOOR * normal.std(), float(np.finfo(np.float32).tiny))
            means.append(normal.mean(0))
            stds.append(np.maximum(normal.std(0), floor))
        return cls(mean=np.stack(means).astype(np.float32), std=np.stack(stds).astype(np.float32))

    def __call__(self, maps: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
        """(N, H, W) maps → z-scores against each image's class."""
        if maps.shape[-2:] != self.mean.shape[-2:]:
            raise ValueError(f"map standardisation was fitted on {tuple(self.mean.shape[-2:])} maps, "
                             f"got {tuple(maps.shape[-2:])}")
        index = np.clip(np.asarray(class_ids, dtype=np.int64), 0, len(self.mean) - 1)
        return ((maps.astype(np.float32) - self.mean[index]) / self.std[index]).astype(np.float32)


def _inner(anomaly_map: np.ndarray, box: Box) -> np.ndarray:
    return anomaly_map[box.top:box.top + box.height, box.left:box.left + box.width]


def _hide_border(anomaly_map: np.ndarray, box: Box) -> np.ndarray:
    """The map with its border (if any) at the lowest score of the image's own pixels."""
    inner = _inner(anomaly_map, box)
    if inner.shape == anomaly_map.shape:
        return anomaly_map
    out = np.full_like(anomaly_map, inner.min())
    out[box.top:box.top + box.height, box.left:box.left + box.width] = inner
    return out


def _padded_to_tile(image: np.ndarray, tile: int) -> np.ndarray:
    """(3, H, W) with zeros right and below up to one tile where it is smaller than one."""
    hw = image.shape[-2:]
    padded = np.zeros((image.shape[0], max(hw[0], tile), max(hw[1], tile)), np.float32)
    padded[:, : hw[0], : hw[1]] = image
    return padded


def canvas_tiles(canvas: np.ndarray, grid: TileGrid | None) -> list[np.ndarray]:
    """What the network sees of a (3, H, W) working-size image: itself, or every tile of its grid."""
    if grid is None:
        return [canvas]
    padded = _padded_to_tile(canvas, grid.tile)
    return [padded[:, y:y + grid.tile, x:x + grid.tile] for y, x in tile_grid(canvas.shape[-2:], grid.tile,
                                                                               grid.stride)]


def _stitch(network: Network, image: np.ndarray, class_id: int, grid: TileGrid, batch_size: int) -> np.ndarray:
    """(3, H, W) → (H, W) map from its tiles, a batch of tiles at a time (memory: one image and one batch).

    Mean merging sums in float64, exact for any realistic overlap count, so the mean of equal
    values is that value exactly; what a tile covers beyond the image (a small image padded to a
    tile) is dropped.
    """
    tile, hw = grid.tile, image.shape[-2:]
    origins = tile_grid(hw, tile, grid.stride)
    padded = _padded_to_tile(image, tile)
    mean = grid.merge == "mean"
    total = np.zeros(padded.shape[1:], np.float64) if mean else np.full(padded.shape[1:], -np.inf, np.float32)
    count = np.zeros(padded.shape[1:], np.float64)
    for begin in range(0, len(origins), batch_size):
        part = origins[begin : begin + batch_size]
        tiles = np.stack([padded[:, y:y + tile, x:x + tile] for y, x in part])
        maps, _ = network(tiles, np.full(len(part), class_id, np.int64))
        for m, (y, x) in zip(maps, part, strict=True):
            if mean:
                total[y:y + tile, x:x + tile] += m
                count[y:y + tile, x:x + tile] += 1
            else:
                np.maximum(total[y:y + tile, x:x + tile], m, out=total[y:y + tile, x:x + tile])
    stitched = (total / count).astype(np.float32) if mean else total
    return stitched[: hw[0], : hw[1]]


def score_canvases(network: Network, canvases: Sequence[np.ndarray], boxes: Sequence[Box], class_ids: np.ndarray,
                   viewing: Viewing, batch_size: int, standardizer: MapStandardizer | None = None,
                   ) -> tuple[list[np.ndarray], np.ndarray]:
    """(3, H, W) working-size images (sizes may differ when tiled) → their (H, W) maps and (N,) image scores."""
    class_ids = np.asarray(class_ids, dtype=np.int64)
    if viewing.tiling is not None:
        grid = viewing.tiling
        raw = [_stitch(network, c, int(k), grid, batch_size) for c, k in zip(canvases, class_ids, strict=True)]
        own = None
    else:
        raw, chunks = [], []
        for start in range(0, len(canvases), batch_size):
            maps, scores = network(np.stack(canvases[start:start + batch_size]), class_ids[start:start + batch_size])
            raw.extend(np.asarray(maps, dtype=np.float32))
            chunks.append(np.asarray(scores, dtype=np.float32).reshape(-1))
        own = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    maps = [_hide_border(m, b) for m, b in zip(raw, boxes, strict=True)]
    if standardizer is not None and maps:
        maps = [_hide_border(z, b) for z, b in zip(standardizer(np.stack(maps), class_ids), boxes, strict=True)]
    elif own is not None and viewing.own_score:
        return maps, own
    scores = np.array([_inner(m, b).max() for m, b in zip(maps, boxes, strict=True)], np.float32)
    return maps, scores


def restore_map(anomaly_map: np.ndarray, box: Box, original_hw: tuple[int, int]) -> np.ndarray:
    """A map on the canvas → (h0, w0) map of the image as it was read (border dropped, bilinear)."""
    return resize_map(_inner(anomaly_map, box), tuple(original_hw))


class ScoringPath(CalibratedClasses):
    """Images of any size in, calibrated detections out, whatever runs the network.

    Subclasses set `viewing`, `standardizer`, `calibration`, `batch_size`, `model_name` and `_class_names`,
    and implement `network`.
    """

    viewing: Viewing
    standardizer: MapStandardizer | None
    batch_size: int
    model_name: str

    @property
    def images_per_call(self) -> int | None:
        """The most images a network call should take, where larger calls cost more per image (None: any)."""
        return 1 if self.model_name in ONE_IMAGE_PER_CALL else None

    @property
    def network_batch(self) -> int:
        """Images (or tiles) per network call: `batch_size`, capped by `images_per_call`."""
        return min(self.batch_size, self.images_per_call or self.batch_size)

    def network(self, images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def score(self, images: Sequence[np.ndarray], class_name: str | None = None) -> list[Detection]:
        """Score images as the run was evaluated (resize or tiles, standardiser); each detection's
        map comes back at its image's own size."""
        class_id = self.class_id(class_name)
        name = self.class_names[class_id]
        viewing = self.viewing
        detections: list[Detection] = []
        for start in range(0, len(images), self.batch_size):
            arrays = [image_array(image, start + i) for i, image in enumerate(images[start:start + self.batch_size])]
            fitted = [fit_array(a, viewing.size or a.shape[:2], viewing.resize) for a in arrays]
            maps, scores = score_canvases(self.network, [f[0] for f in fitted], [f[1] for f in fitted],
                                          np.full(len(arrays), class_id, np.int64), viewing, self.network_batch,
                                          self.standardizer)
            for array, (_, box), anomaly_map, score in zip(arrays, fitted, maps, scores, strict=True):
                detections.append(detection_from(float(score), restore_map(anomaly_map, box, array.shape[:2]),
                                                 self.calibration, name))
        return detections
