"""PVQAE objective (docs/methods.md §1.4): L = L_rec + L_vq + λ_adv·L_adv + λ_b(t)·L_budget."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def reconstruction_loss(images: Tensor, reconstructions: Tensor, kind: str) -> Tensor:
    """Pixel loss in the network's [-1, 1] range (LPIPS needs weights we do not ship)."""
    if kind == "l1":
        return F.l1_loss(reconstructions, images)
    if kind == "l2":
        return F.mse_loss(reconstructions, images)
    return F.l1_loss(reconstructions, images) + F.mse_loss(reconstructions, images)
