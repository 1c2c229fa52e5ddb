"""SSIM reconstruction loss (Bergmann et al. 2019, Eq. 5): mean of 1 − SSIM over the image."""

from __future__ import annotations

from kornia.metrics import ssim
from torch import Tensor

from defectscope.models.base import LossParts


def ssim_loss(images: Tensor, reconstructions: Tensor, window: int) -> LossParts:
    """Both in [0, 1]."""
    ssim_map = ssim(images, reconstructions, window, max_val=1.0, padding="same")
    loss = (1 - ssim_map).mean()
    return LossParts(loss, {"ssim": loss.detach()})
