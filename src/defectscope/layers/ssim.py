"""Structural dissimilarity 1 − SSIM (Wang et al. 2004) per pixel: AE-SSIM's and ViT-AE's loss and map."""

from __future__ import annotations

from kornia.metrics import ssim
from torch import Tensor


def dissimilarity(images: Tensor, reconstructions: Tensor, window: int) -> Tensor:
    """(B, H, W) 1 − SSIM over a window, averaged over channels; both inputs in [0, 1]."""
    return (1 - ssim(images, reconstructions, window, max_val=1.0, padding="same")).mean(dim=1)
