"""SSIM reconstruction loss (Bergmann et al. 2019, Eq. 5): mean of 1 − SSIM over the image."""

from __future__ import annotations

from torch import Tensor

from defectscope.layers.ssim import dissimilarity
from defectscope.models.base import LossParts


def ssim_loss(images: Tensor, reconstructions: Tensor, window: int) -> LossParts:
    """Both in [0, 1]."""
    loss = dissimilarity(images, reconstructions, window).mean()
    return LossParts(loss, {"ssim": loss.detach()})
