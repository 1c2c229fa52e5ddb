"""VQ-GAN-style encoder and decoder (Esser et al. 2021, arXiv:2012.09841): ResNet blocks,
GroupNorm, Swish, self-attention at the lowest resolution. The encoder returns its last
`num_levels` stages as the code hierarchy; the decoder starts from the finest level's grid."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.models.pvqae.config import PVQAEConfig


def norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=min(32, channels // 4) or 1, num_channels=channels, eps=1e-6)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            norm(cin), nn.SiLU(), nn.Conv2d(cin, cout, 3, padding=1),
            norm(cout), nn.SiLU(), nn.Conv2d(cout, cout, 3, padding=1),
        )
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.skip(x) + self.block(x)


class AttnBlock(nn.Module):
    """Single-head spatial self-attention (VQ-GAN's AttnBlock)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).transpose(-1, -2).unbind(1)
        out = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


def _stage(cin: int, cout: int, blocks: int) -> tuple[nn.Sequential, int]:
    layers = []
    for _ in range(blocks):
        layers.append(ResnetBlock(cin, cout))
        cin = cout
    return nn.Sequential(*layers), cin


class Encoder(nn.Module):
    def __init__(self, cfg: PVQAEConfig, in_channels: int = 3) -> None:
        super().__init__()
        if len(cfg.channel_mult) != len(cfg.res_blocks) or len(cfg.channel_mult) < cfg.num_levels:
            raise ValueError("pvqae: channel_mult and res_blocks need one entry per stage, at least num_levels")
        widths = [cfg.channels * m for m in cfg.channel_mult]
        self.conv_in = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.stages = nn.ModuleList()
        self.downs = nn.ModuleList()
        cin = widths[0]
        for i, (width, blocks) in enumerate(zip(widths, cfg.res_blocks, strict=True)):
            if i > 0:
                self.downs.append(nn.Conv2d(cin, cin, 3, stride=2, padding=1))
            stage, cin = _stage(cin, width, blocks)
            self.stages.append(stage)
        self.level_stages = list(range(len(widths) - cfg.num_levels, len(widths)))
        self.mid = nn.Sequential(ResnetBlock(cin, cin), AttnBlock(cin) if cfg.attention else nn.Identity(),
                                 ResnetBlock(cin, cin))
        self.to_codes = nn.ModuleList(
            nn.Sequential(norm(widths[i]), nn.SiLU(), nn.Conv2d(widths[i], cfg.code_dim, 1))
            for i in self.level_stages
        )

    def forward(self, x: Tensor) -> list[Tensor]:
        """x (B, 3, H, W) → [z¹ (finest), …, z^K (coarsest)], each (B, code_dim, h_k, w_k)."""
        h = self.conv_in(x)
        taps = []
        for i, stage in enumerate(self.stages):
            if i > 0:
                h = self.downs[i - 1](h)
            h = stage(h)
            if i == len(self.stages) - 1:
                h = self.mid(h)
            if i in self.level_stages:
                taps.append(h)
        return [proj(t) for proj, t in zip(self.to_codes, taps, strict=True)]


class Decoder(nn.Module):
    """From the routed code map on the finest grid back to an image (no output squashing)."""

    def __init__(self, cfg: PVQAEConfig, out_channels: int = 3, positional: tuple[int, int] | None = None) -> None:
        super().__init__()
        widths = [cfg.channels * m for m in cfg.channel_mult]
        first = len(widths) - cfg.num_levels  # the finest code level's stage
        cin = widths[first]
        self.position = None
        if positional is not None:  # DQ-VAE: repeated coarse codes carry no position
            self.position = nn.Parameter(0.02 * torch.randn(1, cfg.code_dim, *positional))
        self.conv_in = nn.Conv2d(cfg.code_dim, cin, 3, padding=1)
        self.mid = nn.Sequential(ResnetBlock(cin, cin), AttnBlock(cin) if cfg.attention else nn.Identity(),
                                 ResnetBlock(cin, cin))
        self.ups = nn.ModuleList()
        shuffle = cfg.pixel_shuffle_output and first > 0
        for i in reversed(range(first + 1)):
            stage, cin = _stage(cin, widths[i], cfg.res_blocks[i])
            up = nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cin, 3, padding=1)) \
                if i > 0 and not (shuffle and i == 1) else nn.Identity()
            self.ups.append(nn.Sequential(stage, up))
            if shuffle and i == 1:
                break  # stage 0 would run at full resolution: the output conv upsamples instead
        # pixel-shuffle output: the last ×2 costs one conv at half resolution, not a
        # full-resolution conv (the largest single cost of CPU inference, docs/results/pvqae.md)
        out_conv = nn.Conv2d(cin, out_channels * 4 if shuffle else out_channels, 3, padding=1)
        self.conv_out = nn.Sequential(norm(cin), nn.SiLU(), out_conv, *([nn.PixelShuffle(2)] if shuffle else []))

    @property
    def last_layer(self) -> Tensor:
        """The weight VQ-GAN's adaptive adversarial weight is computed at."""
        return self.conv_out[2].weight

    def forward(self, codes: Tensor) -> Tensor:
        if self.position is not None:
            codes = codes + self.position
        h = self.mid(self.conv_in(codes))
        for up in self.ups:
            h = up(h)
        return self.conv_out(h)
