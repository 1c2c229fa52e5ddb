"""ViT-AE anomaly map: the per-pixel reconstruction error, Gaussian-smoothed (section 4.2)."""

from __future__ import annotations

from typing import Literal

from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth, squared_error_map
from defectscope.layers.ssim import dissimilarity


def error_maps(images: Tensor, reconstructions: Tensor, window: int) -> dict[str, Tensor]:
    """Unsmoothed (B, H, W) per-pixel terms of the training loss, both averaged over channels."""
    return {
        "l2": squared_error_map(images, reconstructions) / images.shape[1],
        "ssim": dissimilarity(images, reconstructions, window),
    }


def reconstruction_anomaly_map(
    images: Tensor,
    reconstructions: Tensor,
    kind: Literal["l2_ssim", "l2", "ssim"],
    ssim_weight: float,
    window: int,
    sigma: float,
) -> Tensor:
    """Both in [0, 1]. l2_ssim is L2 + λ·(1 − SSIM) per pixel, the loss of Eq. 13 before averaging."""
    maps = error_maps(images, reconstructions, window)
    if kind == "l2_ssim":
        error = maps["l2"] + ssim_weight * maps["ssim"]
    else:
        error = maps[kind]
    return gaussian_smooth(error, sigma)
