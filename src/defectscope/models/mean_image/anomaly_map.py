"""Distance of an image to its class's mean image, per pixel; stateless."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from defectscope.layers.scoring import squared_error_map


def pixel_distance(images: Tensor, mean: Tensor, std: Tensor, kind: Literal["zscore", "sqdiff"]) -> Tensor:
    """(B, C, H, W) images, per-image mean and std of the same shape → (B, H, W), before smoothing."""
    if kind == "sqdiff":
        return squared_error_map(images, mean)
    return ((images - mean) / std).pow(2).sum(dim=1).sqrt()  # root of the summed squared z-scores
