"""Vector quantisation with a straight-through estimator (van den Oord et al., 2017, arXiv:1711.00937).

Codebook collapse is the known failure of VQ training, so this quantiser offers the usual
guards: exponential-moving-average codebook updates (VQ-VAE appendix A.1), k-means
initialisation on the first batch, and restart of dead codes from current encoder outputs.
Statistics are all-reduced across processes, so DDP ranks keep identical codebooks.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


class QuantizerOutput(NamedTuple):
    quantized: Tensor  # (B, D, H, W), straight-through: forward = codes, backward = identity
    indices: Tensor  # (B, H, W) long
    loss: Tensor  # codebook + β·commitment (codebook term is 0 with EMA updates)
    commitment: Tensor
    perplexity: Tensor  # exp(entropy of code usage in this batch)
    live_codes: Tensor  # codes used at least once in this batch


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(x: Tensor) -> Tensor:
    if _distributed():
        dist.all_reduce(x)
    return x


def _broadcast(x: Tensor) -> Tensor:
    if _distributed():
        dist.broadcast(x, src=0)
    return x


def kmeans(samples: Tensor, num_clusters: int, iterations: int = 10) -> Tensor:
    """Plain Lloyd iterations; empty clusters keep their previous centre."""
    n = samples.shape[0]
    generator = torch.Generator(device="cpu").manual_seed(0)
    pick = torch.randint(n, (num_clusters,), generator=generator).to(samples.device)
    centres = samples[pick].clone()
    for _ in range(iterations):
        assign = torch.cdist(samples, centres).argmin(dim=1)
        counts = torch.bincount(assign, minlength=num_clusters).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, samples)
        filled = counts > 0
        centres[filled] = sums[filled] / counts[filled, None]
    return centres


class VectorQuantizer(nn.Module):
    """Nearest-code quantiser, q(z) = e_j*, j* = argmin_j ||z − e_j||₂ (docs/methods.md §1.2)."""

    def __init__(
        self,
        num_codes: int,
        code_dim: int,
        beta: float = 0.25,
        ema: bool = True,
        decay: float = 0.99,
        kmeans_init: bool = True,
        dead_code_threshold: float = 1.0,
        eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.num_codes, self.code_dim = num_codes, code_dim
        self.beta, self.ema, self.decay, self.eps = beta, ema, decay, eps
        self.dead_code_threshold = dead_code_threshold
        embed = torch.randn(num_codes, code_dim) / code_dim**0.5
        if ema:
            self.register_buffer("codebook", embed)
            self.register_buffer("cluster_size", torch.ones(num_codes))
            self.register_buffer("embed_sum", embed.clone())
        else:
            self.codebook = nn.Parameter(embed)
        self.register_buffer("initialised", torch.tensor(not kmeans_init))

    def forward(self, z: Tensor, weights: Tensor | None = None) -> QuantizerOutput:
        """z: (B, D, H, W); weights: optional (B, H, W) per-vector loss weights."""
        b, d, h, w = z.shape
        flat = z.permute(0, 2, 3, 1).reshape(-1, d)
        if self.training and not bool(self.initialised):
            self._kmeans_init(flat.detach())
        codebook = self.codebook
        indices = self._nearest(flat.detach(), codebook.detach())
        codes = F.embedding(indices, codebook)  # (N, D)

        if weights is None:
            vec_weights = torch.ones(flat.shape[0], device=z.device, dtype=z.dtype)
        else:
            vec_weights = weights.reshape(-1).to(z.dtype)
        norm = vec_weights.sum().clamp_min(1e-8) * d
        commitment = (((flat - codes.detach()) ** 2).sum(1) * vec_weights).sum() / norm
        if self.ema:
            codebook_loss = torch.zeros((), device=z.device)
            if self.training:
                self._ema_update(flat.detach(), indices, vec_weights.detach())
        else:
            codebook_loss = (((flat.detach() - codes) ** 2).sum(1) * vec_weights).sum() / norm
        loss = codebook_loss + self.beta * commitment

        # straight-through only where a gradient can flow; otherwise the codes exactly
        quantized = flat + (codes - flat).detach() if flat.requires_grad else codes
        quantized = quantized.reshape(b, h, w, d).permute(0, 3, 1, 2)
        counts = torch.bincount(indices, minlength=self.num_codes).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return QuantizerOutput(
            quantized=quantized,
            indices=indices.reshape(b, h, w),
            loss=loss,
            commitment=commitment,
            perplexity=perplexity.detach(),
            live_codes=(counts > 0).sum().detach(),
        )

    def codes_from_indices(self, indices: Tensor) -> Tensor:
        """(B, H, W) indices → (B, D, H, W) codes; decode(codes) equals the eval forward."""
        return F.embedding(indices, self.codebook).permute(0, 3, 1, 2)

    @staticmethod
    def _nearest(flat: Tensor, codebook: Tensor) -> Tensor:
        distances = (
            flat.pow(2).sum(1, keepdim=True)
            - 2 * flat @ codebook.t()
            + codebook.pow(2).sum(1)[None]
        )
        return distances.argmin(dim=1)

    @torch.no_grad()
    def _kmeans_init(self, flat: Tensor) -> None:
        centres = kmeans(flat.float(), self.num_codes).to(self.codebook.dtype)
        centres = _broadcast(centres.contiguous())
        self.codebook.data.copy_(centres)
        if self.ema:
            self.embed_sum.copy_(centres)
            self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: Tensor, indices: Tensor, weights: Tensor) -> None:
        one_hot = F.one_hot(indices, self.num_codes).to(flat.dtype) * weights[:, None]
        counts = _all_reduce_sum(one_hot.sum(0))
        sums = _all_reduce_sum(one_hot.t() @ flat)
        self.cluster_size.mul_(self.decay).add_(counts, alpha=1 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums, alpha=1 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_codes * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[:, None])
        self._restart_dead_codes(flat)

    @torch.no_grad()
    def _restart_dead_codes(self, flat: Tensor) -> None:
        """Move codes nobody uses onto random current encoder outputs (same on every rank)."""
        if self.dead_code_threshold <= 0:
            return
        dead = self.cluster_size < self.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        pick = torch.randint(flat.shape[0], (num_dead,), device=flat.device)
        replacements = _broadcast(flat[pick].contiguous())
        self.codebook[dead] = replacements
        self.embed_sum[dead] = replacements * self.dead_code_threshold
        self.cluster_size[dead] = self.dead_code_threshold
