"""Memory module (MemAE, Gong et al., ICCV 2019, arXiv:1904.02639; the ViT-AE paper, Eq. 7-10, 14).

Each feature vector is replaced by a sparse convex combination of N learned items, so the
decoder only ever sees combinations of what normal training images stored.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MemoryOutput(NamedTuple):
    features: Tensor  # (B, C, H, W): ŵM at every position
    weights: Tensor  # (B, H, W, N): the shrunk, L1-renormalised addressing weights ŵ


def hard_shrink(weights: Tensor, threshold: float, eps: float) -> Tensor:
    """Eq. 10, ŵ = max(w − λ, 0)·w / (|w − λ| + ε), then ŵ / ||ŵ||₁ over the last axis.

    The ReLU form is MemAE's continuous stand-in for hard shrinkage; it keeps a gradient for
    the surviving weights. When every weight is shrunk to zero the row stays zero.
    """
    shrunk = F.relu(weights - threshold) * weights / ((weights - threshold).abs() + eps)
    return F.normalize(shrunk, p=1, dim=-1)


def addressing_entropy(weights: Tensor) -> Tensor:
    """Eq. 14 with the sign that makes it an entropy, −Σ ŵ log ŵ, averaged over the vectors.

    The paper prints Σ ŵ log ŵ; minimising that would spread the weights, the opposite of what
    its text (and MemAE) says the term is for. The 1e-12 keeps 0·log 0 at 0 with a finite gradient.
    """
    return -(weights * torch.log(weights + 1e-12)).sum(dim=-1).mean()


class Memory(nn.Module):
    """M ∈ R^{N×C}; cosine addressing (Eq. 7) with a temperature, softmax (Eq. 8), shrinkage, read.

    Args:
        items: N, the number of memory items.
        dim: C, the feature size of the map it reads (the encoder's D).
        temperature: τ in softmax(cos / τ); 1 is the paper's Eq. 8.
        threshold: λ; 0 or less means 1/N as in the paper.
        eps: ε of the shrinkage.
    """

    def __init__(self, items: int, dim: int, temperature: float = 1.0, threshold: float = 0.0,
                 eps: float = 1e-12) -> None:
        super().__init__()
        if items < 2 or temperature <= 0:
            raise ValueError(f"memory: need at least 2 items and a positive temperature, got {items}, {temperature}")
        self.items = nn.Parameter(torch.empty(items, dim).uniform_(-1 / math.sqrt(dim), 1 / math.sqrt(dim)))
        self.temperature = temperature
        self.threshold = threshold if threshold > 0 else 1.0 / items
        self.eps = eps

    def address(self, queries: Tensor) -> Tensor:
        """(..., C) → ŵ (..., N)."""
        cosine = F.normalize(queries, dim=-1) @ F.normalize(self.items, dim=-1).T
        return hard_shrink(torch.softmax(cosine / self.temperature, dim=-1), self.threshold, self.eps)

    def forward(self, features: Tensor) -> MemoryOutput:
        """features (B, C, H, W) → the memory's reading of every position, and its weights."""
        weights = self.address(features.permute(0, 2, 3, 1))  # (B, H, W, N)
        read = weights @ self.items  # (B, H, W, C)
        return MemoryOutput(read.permute(0, 3, 1, 2).contiguous(), weights)
