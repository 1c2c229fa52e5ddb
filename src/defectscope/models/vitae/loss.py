"""ViT-AE objective (Eq. 11-15): λ_recon (L2 + λ·(1 − SSIM)) + λ_ent L_ent."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from defectscope.layers.ssim import dissimilarity
from defectscope.models.base import LossParts
from defectscope.models.vitae.config import ViTAEConfig
from defectscope.models.vitae.memory import addressing_entropy


def vitae_loss(images: Tensor, reconstructions: Tensor, weights: Tensor | None, cfg: ViTAEConfig) -> LossParts:
    """images and reconstructions in [0, 1]; weights: the memory's ŵ, or None without memory."""
    l2 = F.mse_loss(reconstructions, images)  # Eq. 11, averaged over channels too
    structural = dissimilarity(images, reconstructions, cfg.ssim_window).mean()  # Eq. 12, AE-SSIM's windowed SSIM
    total = cfg.recon_weight * (l2 + cfg.ssim_weight * structural)  # Eq. 13
    parts = {"l2": l2.detach(), "ssim": structural.detach()}
    if weights is not None:
        entropy = addressing_entropy(weights)  # Eq. 14
        total = total + cfg.entropy_weight * entropy  # Eq. 15
        parts["entropy"] = entropy.detach()
    return LossParts(total, parts)
