"""Coordinate attention (Hou, Zhou, Feng, "Coordinate Attention for Efficient Mobile Network
Design", CVPR 2021, arXiv:2103.02907): channel attention that keeps where along H and W it looks."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class CoordAttention(nn.Module):
    """y = x ⊙ a_h ⊙ a_w, with a_h (C×H×1) and a_w (C×1×W) from features pooled along each axis.

    Args:
        channels: channels of the input, which the output keeps.
        reduction: the shared 1×1 conv narrows the channels by this factor ...
        min_hidden: ... but to no fewer than this many (the paper's 8).
    """

    def __init__(self, channels: int, reduction: int = 32, min_hidden: int = 8) -> None:
        super().__init__()
        hidden = max(min_hidden, channels // reduction)
        self.encode = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.Hardswish()
        )
        self.to_h = nn.Conv2d(hidden, channels, 1)
        self.to_w = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        # Strip pooling: average over W gives one descriptor per row, over H one per column
        rows = x.mean(dim=3, keepdim=True)  # (B, C, H, 1)
        cols = x.mean(dim=2, keepdim=True).transpose(2, 3)  # (B, C, W, 1)
        # one shared transform of both strips, so the two directions see the same channel mix
        y = self.encode(torch.cat([rows, cols], dim=2))  # (B, hidden, H + W, 1)
        y_h, y_w = y.split([h, w], dim=2)
        a_h = torch.sigmoid(self.to_h(y_h))  # (B, C, H, 1)
        a_w = torch.sigmoid(self.to_w(y_w.transpose(2, 3)))  # (B, C, 1, W)
        return x * a_h * a_w
