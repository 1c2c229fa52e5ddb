"""Losses: the U-Net's reconstruction loss and FADeR's pairwise ranking loss (Eq. 1, 3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from defectscope.layers.msgms import msgms_loss


def reconstruction_loss(
    images: Tensor, reconstructions: Tensor, msgms_weight: float
) -> tuple[Tensor, dict[str, Tensor]]:
    """L2 + w·MSGMS (RIAD's loss without its SSIM term); both in [0, 1]."""
    l2 = F.mse_loss(reconstructions, images)
    parts = {"l2": l2.detach()}
    total = l2
    if msgms_weight > 0:
        gms = msgms_loss(images, reconstructions)
        total = total + msgms_weight * gms
        parts["msgms"] = gms.detach()
    return total, parts


def patch_errors(images: Tensor, reconstructions: Tensor, m: int) -> Tensor:
    """Eq. 1: l_i = mean squared error of patch i (m×m, all channels): (B, n), row-major."""
    err = (images - reconstructions).pow(2).mean(dim=1, keepdim=True)
    return F.avg_pool2d(err, m).flatten(1)


def random_pairs(n: int, count: int, batch: int, generator: torch.Generator | None = None,
                 device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    """`count` index pairs (i, j), i ≠ j, per image: two (B, count) tensors."""
    i = torch.randint(0, n, (batch, count), generator=generator, device=device)
    j = (i + torch.randint(1, max(n, 2), (batch, count), generator=generator, device=device)) % n
    return i, j


def all_pairs(n: int, batch: int, device: torch.device | None = None) -> tuple[Tensor, Tensor]:
    i, j = torch.triu_indices(n, n, offset=1, device=device)
    return i.expand(batch, -1), j.expand(batch, -1)


def ranking_loss(pred: Tensor, target: Tensor, margin: float, pairs: tuple[Tensor, Tensor] | None = None) -> Tensor:
    """Eq. 3: mean over pairs of max(0, −𝟙(l_i, l_j)·(l̂_i − l̂_j) + ξ), 𝟙 = +1 if l_i > l_j else −1.

    pred, target: (B, n); pairs: (B, P) index tensors (default: every pair i < j).
    """
    i, j = pairs if pairs is not None else all_pairs(pred.shape[1], pred.shape[0], pred.device)
    sign = torch.where(target.gather(1, i) > target.gather(1, j), 1.0, -1.0).to(pred.dtype)
    diff = pred.gather(1, i) - pred.gather(1, j)
    return torch.clamp(margin - sign * diff, min=0).mean()
