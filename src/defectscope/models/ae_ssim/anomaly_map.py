"""AE-SSIM residual map: 1 − SSIM(x, x̂) per pixel, averaged over channels and smoothed."""

from __future__ import annotations

from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth
from defectscope.layers.ssim import dissimilarity


def ssim_anomaly_map(images: Tensor, reconstructions: Tensor, window: int, sigma: float) -> Tensor:
    return gaussian_smooth(dissimilarity(images, reconstructions, window), sigma)
