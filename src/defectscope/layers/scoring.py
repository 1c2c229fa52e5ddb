"""Turning per-pixel errors into smoothed anomaly maps and image scores, the same way for all."""

from __future__ import annotations

from typing import Literal

from kornia.filters import gaussian_blur2d
from torch import Tensor


def gaussian_smooth(maps: Tensor, sigma: float) -> Tensor:
    """Smooth (B, H, W) maps; sigma 0 leaves them as they are. Kernel spans ±4 sigma."""
    if sigma <= 0:
        return maps
    size = 2 * int(4 * sigma + 0.5) + 1
    return gaussian_blur2d(maps[:, None], (size, size), (sigma, sigma), border_type="reflect")[:, 0]


def image_score(maps: Tensor, mode: Literal["max", "topk_mean"] = "max", topk: float = 0.01) -> Tensor:
    """Image score from a (B, H, W) map: the max, or the mean of the top fraction of pixels."""
    flat = maps.flatten(1)
    if mode == "max":
        return flat.amax(dim=1)
    k = max(1, int(round(topk * flat.shape[1])))
    return flat.topk(k, dim=1).values.mean(dim=1)


def squared_error_map(images: Tensor, reconstructions: Tensor) -> Tensor:
    """Σ_c (x − x̂)²: the L2 reconstruction error per pixel, (B, H, W)."""
    return (images - reconstructions).pow(2).sum(dim=1)


def to_unit_range(x: Tensor) -> Tensor:
    """Map a network's [-1, 1] output back to image range [0, 1]."""
    return (x.clamp(-1, 1) + 1) * 0.5


def to_model_range(images: Tensor) -> Tensor:
    """Images in [0, 1] → [-1, 1], the range the reconstruction networks work in."""
    return images * 2 - 1


__all__ = [
    "gaussian_smooth",
    "image_score",
    "squared_error_map",
    "to_model_range",
    "to_unit_range",
]
