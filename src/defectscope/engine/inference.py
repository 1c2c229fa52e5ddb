"""From working-size images to their maps and scores: the one path evaluation, calibration,
predict and serve share, whole images or tiles.

Whole images go to the model in batches. With tiling, each image is cut into its grid of tiles,
the tiles go to the model in batches, and their maps are stitched into one map of the image.
Where an image has a border (keep_aspect, or a small image padded to a tile), the border takes
the lowest score of the image's own pixels, so it never shows in a map, and the image score is
the maximum of the map over the image's own pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from defectscope.data.config import DataConfig, NoTiling, Tiling
from defectscope.data.geometry import Box, Stitcher, cut_tiles, pad_to_tile, tile_grid
from defectscope.engine.standardize import MapStandardizer
from defectscope.models.base import AnomalyModel, ModelOutput


@dataclass(frozen=True)
class Viewing:
    """How the model looks at an image: whole or by tiles, and where the image score comes from."""

    tiling: NoTiling | Tiling = NoTiling()
    # the model's own image score (PVQAE's product, PatchCore's reweighting …); False: the max of
    # the map over the image's own pixels, the only score a stitched or bordered map has
    own_score: bool = True

    @classmethod
    def of(cls, data: DataConfig) -> Viewing:
        tiled = isinstance(data.tiling, Tiling)
        return cls(tiling=data.tiling, own_score=not tiled and data.resize == "stretch")


def _hide_border(anomaly_map: Tensor, box: Box) -> tuple[Tensor, Tensor]:
    """(map with its border at the image's lowest score, max over the image's own pixels)."""
    inner = anomaly_map[box.top:box.top + box.height, box.left:box.left + box.width]
    if tuple(inner.shape) != tuple(anomaly_map.shape):
        out = torch.full_like(anomaly_map, float(inner.min()))
        out[box.top:box.top + box.height, box.left:box.left + box.width] = inner
        anomaly_map = out
    return anomaly_map, inner.max()


def _predict_chunks(model: AnomalyModel, images: Tensor, class_ids: Tensor, batch_size: int,
                    device: torch.device) -> tuple[Tensor, Tensor]:
    maps, scores = [], []
    for start in range(0, len(images), batch_size):
        out = model.predict(images[start:start + batch_size].to(device), class_ids[start:start + batch_size].to(device))
        maps.append(out.anomaly_map.float())
        scores.append(out.image_score.float())
    return torch.cat(maps), torch.cat(scores)


@torch.no_grad()
def infer(
    model: AnomalyModel,
    images: Sequence[Tensor],
    class_ids: Tensor,
    boxes: Sequence[Box],
    viewing: Viewing,
    batch_size: int,
    device: torch.device,
) -> tuple[list[Tensor], Tensor]:
    """(3, H, W) images in [0, 1] (sizes may differ when tiled) → their (H, W) maps and (N,) scores.

    The model must be in eval mode. Maps and scores come back on `device`.
    """
    if isinstance(viewing.tiling, Tiling):
        return _infer_tiled(model, images, class_ids, boxes, viewing.tiling, batch_size, device)
    maps, scores = _predict_chunks(model, torch.stack(list(images)), class_ids, batch_size, device)
    out_maps = []
    out_scores = []
    for anomaly_map, score, box in zip(maps, scores, boxes, strict=True):
        anomaly_map, inner_max = _hide_border(anomaly_map, box)
        out_maps.append(anomaly_map)
        out_scores.append(score if viewing.own_score else inner_max)
    return out_maps, torch.stack(out_scores) if out_scores else scores


def _infer_tiled(model: AnomalyModel, images: Sequence[Tensor], class_ids: Tensor, boxes: Sequence[Box],
                 tiling: Tiling, batch_size: int, device: torch.device) -> tuple[list[Tensor], Tensor]:
    """Tiles are cut and stitched a batch at a time, so memory holds one image, its map and one batch."""
    maps, scores = [], []
    for image, class_id, box in zip(images, class_ids, boxes, strict=True):
        hw = tuple(image.shape[-2:])
        origins = tile_grid(hw, tiling.tile, tiling.stride)
        padded = pad_to_tile(image, tiling.tile)
        stitcher = Stitcher(hw, tiling.tile, tiling.merge, device)
        for start in range(0, len(origins), batch_size):
            chunk = origins[start:start + batch_size]
            tiles = cut_tiles(padded, chunk, tiling.tile).to(device)
            out = model.predict(tiles, class_id.expand(len(chunk)).to(device))
            stitcher.add(out.anomaly_map.float(), chunk)
        anomaly_map, score = _hide_border(stitcher.result(), box)
        maps.append(anomaly_map)
        scores.append(score)
    return maps, torch.stack(scores)


def standardized(maps: list[Tensor], scores: Tensor, class_ids: Tensor,
                 standardizer: MapStandardizer | None) -> tuple[list[Tensor], Tensor]:
    """The maps and scores as the run was evaluated: z-scored per position when it has a standardiser."""
    if standardizer is None or not maps:
        return maps, scores
    out = standardizer(ModelOutput(torch.stack(maps), scores), class_ids.to(scores.device))
    return list(out.anomaly_map), out.image_score
