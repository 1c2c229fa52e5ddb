"""PaDiM's anomaly map: Mahalanobis distances upsampled to the image and Gaussian-smoothed (σ = 4)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth


def upsampled_map(distances: Tensor, size: tuple[int, int], sigma: float) -> Tensor:
    """(B, h, w) → (B, H, W), bilinear, then smoothed."""
    up = F.interpolate(distances[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return gaussian_smooth(up, sigma)
