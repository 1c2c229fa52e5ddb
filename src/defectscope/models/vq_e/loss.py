"""VQ-VAE objective: L2 reconstruction + codebook/commitment terms (van den Oord et al. Eq. 3)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from defectscope.layers.quantizer import QuantizerOutput
from defectscope.models.base import LossParts


def vqvae_loss(images: Tensor, reconstructions: Tensor, quantizer: QuantizerOutput) -> LossParts:
    """images and reconstructions in the network's [-1, 1] range."""
    rec = F.mse_loss(reconstructions, images)
    total = rec + quantizer.loss
    return LossParts(total, {"rec": rec.detach(), "vq": quantizer.loss.detach()})
