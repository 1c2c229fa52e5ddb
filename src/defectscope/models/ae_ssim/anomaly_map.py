"""AE-SSIM residual map: 1 − SSIM(x, x̂) per pixel, averaged over channels and smoothed."""

from __future__ import annotations

from kornia.metrics import ssim
from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth


def ssim_anomaly_map(images: Tensor, reconstructions: Tensor, window: int, sigma: float) -> Tensor:
    ssim_map = ssim(images, reconstructions, window, max_val=1.0, padding="same")
    return gaussian_smooth((1 - ssim_map).mean(dim=1), sigma)
