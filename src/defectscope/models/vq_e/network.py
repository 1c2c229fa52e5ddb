"""VQ-VAE encoder, one codebook, decoder (van den Oord et al. 2017, arXiv:1711.00937)."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor, nn

from defectscope.layers.conv import ResidualBlock
from defectscope.layers.quantizer import QuantizerOutput, VectorQuantizer
from defectscope.models.vq_e.config import VQEConfig


class VQVAEOutput(NamedTuple):
    reconstruction: Tensor  # (B, 3, H, W) in [-1, 1]
    quantizer: QuantizerOutput


class VQVAE(nn.Module):
    def __init__(self, cfg: VQEConfig, in_channels: int = 3) -> None:
        super().__init__()
        stages = int(math.log2(cfg.downsample))
        if 2**stages != cfg.downsample:
            raise ValueError(f"vq_e: downsample must be a power of two, got {cfg.downsample}")
        c = cfg.hidden_channels
        enc: list[nn.Module] = []
        channels = in_channels
        for i in range(stages):
            out = c // 2 if i == 0 and stages > 1 else c
            enc += [nn.Conv2d(channels, out, 4, 2, 1), nn.ReLU()]
            channels = out
        enc += [nn.Conv2d(channels, c, 3, padding=1)]
        enc += [ResidualBlock(c) for _ in range(cfg.residual_blocks)]
        enc += [nn.ReLU(), nn.Conv2d(c, cfg.code_dim, 1)]
        self.encoder = nn.Sequential(*enc)
        self.quantizer = VectorQuantizer(
            cfg.num_codes, cfg.code_dim, cfg.beta, cfg.ema, cfg.ema_decay, cfg.kmeans_init,
            cfg.dead_code_threshold,
        )
        dec: list[nn.Module] = [nn.Conv2d(cfg.code_dim, c, 3, padding=1)]
        dec += [ResidualBlock(c) for _ in range(cfg.residual_blocks)]
        dec += [nn.ReLU()]
        for i in range(stages):
            last = i == stages - 1
            dec += [nn.ConvTranspose2d(c, c // 2 if last else c, 4, 2, 1), nn.ReLU()]
        dec += [nn.Conv2d(c // 2, in_channels, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def encode(self, x: Tensor) -> QuantizerOutput:
        return self.quantizer(self.encoder(x))

    def decode(self, codes: Tensor) -> Tensor:
        return torch.tanh(self.decoder(codes))

    def decode_indices(self, indices: Tensor) -> Tensor:
        return self.decode(self.quantizer.codes_from_indices(indices))

    def forward(self, x: Tensor) -> VQVAEOutput:
        """x in [-1, 1]."""
        q = self.encode(x)
        return VQVAEOutput(self.decode(q.quantized), q)
