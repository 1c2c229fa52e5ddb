"""VQ-E anomaly map: per-pixel L2 reconstruction error, Gaussian-smoothed."""

from __future__ import annotations

from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth, squared_error_map


def l2_anomaly_map(images: Tensor, reconstructions: Tensor, sigma: float) -> Tensor:
    """Both in [0, 1]; returns (B, H, W)."""
    return gaussian_smooth(squared_error_map(images, reconstructions), sigma)
