"""The ViT-AE decoder (section 3.4): six transposed convolutions, BatchNorm + ReLU, tanh last."""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn

LAYERS = 6


def decoder_strides(patch_size: int, size_keeping: Literal["end", "start"] = "end") -> list[int]:
    """Strides of the six layers: log2(P) double the size, the rest keep it.

    The paper has six layers "increasing the size" of a map that is P times smaller than the
    image; with P = 16 only four doublings fit, so two layers are 3×3 stride-1 (an open choice:
    at the end they refine at full resolution, at the start they work on the token grid).
    """
    ups = int(math.log2(patch_size)) if patch_size > 0 else -1
    if patch_size < 1 or 2**ups != patch_size or ups > LAYERS:
        raise ValueError(f"vitae: patch_size must be a power of two up to {2**LAYERS}, got {patch_size}")
    keep = [1] * (LAYERS - ups)
    return [2] * ups + keep if size_keeping == "end" else keep + [2] * ups


class Decoder(nn.Module):
    """(B, C, H/P, W/P) features → (B, out, H, W) in [-1, 1]."""

    def __init__(self, in_channels: int, channels: tuple[int, ...], patch_size: int,
                 size_keeping: Literal["end", "start"] = "end", out_channels: int = 3) -> None:
        super().__init__()
        if len(channels) != LAYERS - 1:
            raise ValueError(f"vitae: decoder_channels needs {LAYERS - 1} widths (the sixth layer outputs RGB), "
                             f"got {len(channels)}")
        widths = [in_channels, *channels, out_channels]
        layers: list[nn.Module] = []
        for i, stride in enumerate(decoder_strides(patch_size, size_keeping)):
            last = i == LAYERS - 1
            kernel = 4 if stride == 2 else 3  # 4×4 / stride 2 / pad 1 doubles; 3×3 / stride 1 / pad 1 keeps
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], kernel, stride, 1, bias=last))
            layers += [nn.Tanh()] if last else [nn.BatchNorm2d(widths[i + 1]), nn.ReLU()]
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
