"""Per-position standardisation of anomaly maps, fitted on held-out normal images.

A reconstruction model's error is largest where normal images themselves vary (tile borders,
bright or textured regions), so the raw map's maximum often sits on normal structure. Dividing
each pixel's score by how much it varies at that position on normal images (per class, after
subtracting its mean there) lets a defect stand out against what is usual at its place. Only
held-out normal images are used, never test labels. `eval.map_standardization: position`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from defectscope.config import ConfigError
from defectscope.models.base import ModelOutput

TENSOR_PREFIX = "map_standardizer."
# a position where normal maps hardly vary (a constant border, or an exact zero of a product
# score) would divide by ~0; the floor is this share of the spread over all positions
STD_FLOOR = 0.01


def require_held_out_images(mode: str, held_out: int) -> None:
    """Checked before training too, so a run cannot fail at the very end over its split."""
    if mode != "none" and held_out < 2:
        raise ConfigError(f"eval.map_standardization: {mode} needs at least 2 held-out normal images, "
                          f"the split has {held_out} (raise data.validation_fraction)")


@dataclass
class MapStandardizer:
    mean: Tensor  # (C, H, W): per class, the mean score at each position on normal images
    std: Tensor  # (C, H, W): the standard deviation there, floored

    @classmethod
    def fit(cls, maps: np.ndarray, class_ids: np.ndarray, num_classes: int) -> MapStandardizer:
        """maps (N, H, W) and class ids (N,) of held-out normal images.

        A class without held-out images gets the statistics of all classes pooled.
        """
        require_held_out_images("position", len(maps))
        maps64 = maps.astype(np.float64)
        means, stds = [], []
        for c in range(num_classes):
            pick = class_ids == c
            normal = maps64[pick] if pick.sum() >= 2 else maps64
            floor = max(STD_FLOOR * normal.std(), float(np.finfo(np.float32).tiny))
            means.append(normal.mean(0))
            stds.append(np.maximum(normal.std(0), floor))
        return cls(mean=torch.from_numpy(np.stack(means)).float(), std=torch.from_numpy(np.stack(stds)).float())

    def __call__(self, out: ModelOutput, class_ids: Tensor | None) -> ModelOutput:
        """z-scored map; the image score becomes its maximum (the model's own score is replaced)."""
        maps = out.anomaly_map
        if maps.shape[-2:] != self.mean.shape[-2:]:
            raise ValueError(
                f"map standardisation was fitted on {tuple(self.mean.shape[-2:])} maps, got {tuple(maps.shape[-2:])}"
            )
        if class_ids is None:
            class_ids = torch.zeros(len(maps), dtype=torch.long)
        index = class_ids.long().cpu().clamp(0, len(self.mean) - 1)
        mean = self.mean[index].to(maps.device, maps.dtype)
        std = self.std[index].to(maps.device, maps.dtype)
        z = (maps - mean) / std
        return ModelOutput(anomaly_map=z, image_score=z.flatten(1).amax(1))

    def tensors(self) -> dict[str, Tensor]:
        return {TENSOR_PREFIX + "mean": self.mean.contiguous(), TENSOR_PREFIX + "std": self.std.contiguous()}

    @classmethod
    def pop_from(cls, state: dict[str, Tensor]) -> MapStandardizer | None:
        """Take the standardiser's tensors out of a checkpoint's state dict, if it has them."""
        mean = state.pop(TENSOR_PREFIX + "mean", None)
        std = state.pop(TENSOR_PREFIX + "std", None)
        if mean is None or std is None:
            return None
        return cls(mean=mean.float().cpu(), std=std.float().cpu())
