"""Bergmann et al.'s convolutional autoencoder, extended by one stride-2 stage per doubling of
the input beyond 128 px so the bottleneck is always 8×8 → 1×1 × latent_dim."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from defectscope.models.ae_ssim.config import AESSIMConfig


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


def _layer_plan(image_size: int, c: int) -> list[tuple[int, int, int]]:
    """(out_channels, kernel, stride) per encoder conv, paper Table 1 for 128 px."""
    extra = int(math.log2(image_size // 128)) if image_size > 128 else 0
    plan = [(c, 4, 2)] * (1 + extra)
    plan += [(c, 4, 2), (c, 3, 1), (2 * c, 4, 2), (2 * c, 3, 1), (4 * c, 4, 2), (2 * c, 3, 1), (c, 3, 1)]
    return plan


class AutoEncoder(nn.Module):
    def __init__(self, cfg: AESSIMConfig, image_size: int, in_channels: int = 3) -> None:
        super().__init__()
        if image_size < 128 and image_size not in (32, 64):
            raise ValueError(f"AE-SSIM needs an image size of 32, 64 or a power of two ≥ 128, got {image_size}")
        plan = _layer_plan(image_size, cfg.base_channels)
        if image_size < 128:  # small test images: drop leading stride-2 stages
            drop = int(math.log2(128 // image_size))
            strided = [i for i, (_, _, s) in enumerate(plan) if s == 2][:drop]
            plan = [p for i, p in enumerate(plan) if i not in strided]
        enc: list[nn.Module] = []
        channels = in_channels
        for out, k, s in plan:
            enc += [nn.Conv2d(channels, out, k, s, padding=(k - s + 1) // 2), _act()]
            channels = out
        self.bottleneck_size = image_size // 2 ** sum(1 for _, _, s in plan if s == 2)
        enc += [nn.Conv2d(channels, cfg.latent_dim, self.bottleneck_size)]  # → 1×1 latent
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.ConvTranspose2d(cfg.latent_dim, channels, self.bottleneck_size), _act()]
        for i, (_, k, s) in enumerate(reversed(plan)):
            target = plan[-i - 2][0] if i < len(plan) - 1 else cfg.base_channels
            if s == 2:
                dec += [nn.ConvTranspose2d(channels, target, 4, 2, padding=1), _act()]
            else:
                dec += [nn.Conv2d(channels, target, k, 1, padding=k // 2), _act()]
            channels = target
        dec += [nn.Conv2d(channels, in_channels, 3, 1, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def forward(self, x: Tensor) -> Tensor:
        """x in [-1, 1] → reconstruction in [-1, 1]."""
        return torch.tanh(self.decoder(self.encoder(x)))
