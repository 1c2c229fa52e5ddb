"""PatchCore's maps and image score (Roth et al. 2022, Sec. 3.3, Eq. 6–7)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth
from defectscope.models.patchcore.memory_bank import MemoryBank


class PatchMatch(NamedTuple):
    distances: Tensor  # (B, h, w): each patch's distance to its nearest bank patch
    indices: Tensor  # (B, h, w): that bank patch
    features: Tensor  # (B, h·w, C): the patches
    support: dict[int, Tensor]  # Eq. 7's neighbours of some bank patches, found on the way (HNSW)


def patch_scores(features: Tensor, bank: MemoryBank, neighbours: int = 1) -> PatchMatch:
    """(B, C, h, w) → each patch's nearest bank patch and distance.

    With an approximate search each image's farthest patch is still the exact one (the image
    score reads only it); other patches may read a little far. `neighbours`: Eq. 7's b, whose
    support the approximate search finds on the way where it can.
    """
    b, c, h, w = features.shape
    flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
    dist, index = bank.nearest_patches(flat.reshape(-1, c))
    dist, index = dist.view(b, h * w), index.view(b, h * w)
    support = bank.refine_maxima(dist, index, flat, neighbours)
    return PatchMatch(dist.view(b, h, w), index.view(b, h, w), flat, support)


def reweighted_image_score(scores: Tensor, index: Tensor, flat: Tensor, bank: MemoryBank, neighbours: int,
                           support: dict[int, Tensor] | None = None) -> Tensor:
    """Eq. 7: s = (1 − softmax_{m ∈ N_b(m*)}(‖m_test,* − m‖)[m*]) · s*.

    m_test,* is the test patch farthest from the bank, s* its distance, m* its nearest bank
    patch and N_b(m*) the b nearest bank patches of m* (m* itself first). The weight grows
    when m* sits far from its own neighbours, i.e. in a sparse part of the bank. `support`:
    N_b of some bank patches already found exactly ({index: (b,) indices}); the others are searched.
    """
    b = scores.shape[0]
    flat_scores = scores.view(b, -1)
    worst = flat_scores.argmax(dim=1)
    rows = torch.arange(b, device=scores.device)
    s_star = flat_scores[rows, worst]
    if neighbours <= 1:
        return s_star
    m_test = flat[rows, worst]  # (B, C)
    star = index.view(b, -1)[rows, worst]  # (B,) m*'s bank index
    if support:
        neighbourhood = _known_or_searched(star, support, bank, neighbours)
    else:  # no per-image Python here: this path is traced into an exported graph
        _, neighbourhood = bank.nearest(bank.bank[star], k=neighbours)  # (B, b), exact whatever the search
    dist = torch.linalg.vector_norm(m_test[:, None] - bank.bank[neighbourhood], dim=-1)  # (B, b)
    weight = 1 - F.softmax(dist, dim=1)[:, 0]
    return weight * s_star


def _known_or_searched(star: Tensor, support: dict[int, Tensor], bank: MemoryBank, neighbours: int) -> Tensor:
    """(B, b): each m*'s neighbours from `support`, the missing ones searched exactly in one pass."""
    missing = [i for i, m in enumerate(star.tolist()) if m not in support]
    found = dict(support)
    if missing:
        _, searched = bank.nearest(bank.bank[star[missing]], k=neighbours)
        found.update(zip((int(star[i]) for i in missing), searched, strict=True))
    return torch.stack([found[m] for m in star.tolist()])


def upsampled_map(scores: Tensor, size: tuple[int, int], sigma: float) -> Tensor:
    """(B, h, w) patch scores → (B, H, W): bilinear upsampling, then Gaussian smoothing."""
    up = F.interpolate(scores[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]
    return gaussian_smooth(up, sigma)
