"""Dynamic Routing Module (docs/methods.md §1.3, after DQ-VAE, Huang et al. 2023, arXiv:2305.11718).

Per coarsest-grid cell: pool the finer levels down, concatenate, a one-hidden-layer MLP gives
logits over the K levels; Gumbel-softmax during training, argmax at inference.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class Routing(NamedTuple):
    scores: Tensor  # (B, K, h, w) on the coarsest grid; one-hot at inference
    logits: Tensor  # (B, K, h, w)
    levels: Tensor  # (B, h, w) long: chosen level, 0 = finest


def gumbel_tau(progress: float, start: float, end: float) -> float:
    """Exponential annealing from start to end over training progress ∈ [0, 1]."""
    progress = min(max(progress, 0.0), 1.0)
    if start <= 0 or end <= 0:
        raise ValueError("Gumbel temperatures must be positive")
    return start * math.exp(progress * math.log(end / start))


class DynamicRouter(nn.Module):
    def __init__(self, channels: int, num_levels: int, hidden: int, extra_channels: int = 0) -> None:
        super().__init__()
        self.extra_channels = extra_channels
        self.mlp = nn.Sequential(
            nn.Conv2d(channels * num_levels + extra_channels, hidden, 1), nn.SiLU(), nn.Conv2d(hidden, num_levels, 1)
        )

    def forward(self, features: list[Tensor], tau: float = 1.0, hard: bool = True, sample: bool = True,
                extra: Tensor | None = None) -> Routing:
        """features: per level (B, C, h_k, w_k), finest first; extra: (B, E, h, w) more inputs per
        coarse cell, as many as the router was built for; sample=False → argmax, no noise."""
        if (0 if extra is None else extra.shape[1]) != self.extra_channels:
            raise ValueError(f"router built for {self.extra_channels} extra input channels, got "
                             f"{0 if extra is None else extra.shape[1]}")
        coarse = features[-1].shape[-2:]
        pooled = [F.adaptive_avg_pool2d(f, coarse) for f in features[:-1]] + [features[-1]]
        if extra is not None:
            pooled.append(extra.to(pooled[0].dtype))
        logits = self.mlp(torch.cat(pooled, dim=1))
        if sample:
            scores = F.gumbel_softmax(logits, tau=tau, hard=hard, dim=1)
        else:
            scores = F.one_hot(logits.argmax(dim=1), logits.shape[1]).permute(0, 3, 1, 2).to(logits.dtype)
        return Routing(scores, logits, scores.argmax(dim=1))


def one_hot_levels(levels: Tensor, num_levels: int) -> Tensor:
    """(B, h, w) level indices → (B, K, h, w) one-hot scores (e.g. the prior's budget)."""
    return F.one_hot(levels, num_levels).permute(0, 3, 1, 2).float()


def upsample_to(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="nearest") if x.shape[-2:] != size else x


def route(codes: list[Tensor], scores: Tensor) -> Tensor:
    """ẑ = Σ_k up(s_k) ⊙ up(q(z^k)) on the finest grid (nearest upsampling)."""
    size = codes[0].shape[-2:]
    return sum(upsample_to(scores[:, k : k + 1], size) * upsample_to(c, size) for k, c in enumerate(codes))


def codes_per_image(levels: Tensor, num_levels: int) -> Tensor:
    """How many codes each image spends: a cell at level k costs 4^(K−1−k) codes."""
    per_cell = 4 ** (num_levels - 1 - levels)
    return per_cell.flatten(1).sum(dim=1)
