"""Convolutional blocks used by more than one model."""

from __future__ import annotations

from torch import Tensor, nn


class ResidualBlock(nn.Module):
    """VQ-VAE's residual block: ReLU → 3×3 conv → ReLU → 1×1 conv, added to the input."""

    def __init__(self, channels: int, hidden: int | None = None) -> None:
        super().__init__()
        hidden = hidden or channels // 2
        self.body = nn.Sequential(
            nn.ReLU(),
            nn.Conv2d(channels, hidden, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
