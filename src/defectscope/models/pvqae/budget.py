"""Context-dependent budget cost (docs/methods.md §1.4): patches rich in detail make fine codes cheap.

The richness of a coarse patch is the normalised entropy of its Haar wavelet coefficient
energies; the base cost is its inverse and every finer level costs α times more.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def haar_dwt2(x: Tensor, levels: int) -> list[Tensor]:
    """Orthonormal 2-D Haar transform of (N, H, W): [details level 1, …, details level L, approx].

    Orthonormal, so Σ coefficient² = Σ pixel² (energy is preserved); each detail tensor is
    (N, 3, h, w) (horizontal, vertical, diagonal), the approximation (N, 1, h, w).
    """
    out: list[Tensor] = []
    approx = x[:, None]
    for _ in range(levels):
        a = approx[..., 0::2, 0::2]
        b = approx[..., 0::2, 1::2]
        c = approx[..., 1::2, 0::2]
        d = approx[..., 1::2, 1::2]
        ll = (a + b + c + d) / 2
        details = torch.cat([(a - b + c - d) / 2, (a + b - c - d) / 2, (a - b - c + d) / 2], dim=1)
        out.append(details)
        approx = ll
    out.append(approx)
    return out


def patch_entropy(
    images: Tensor, grid: tuple[int, int], levels: int = 0, include_approximation: bool = False
) -> Tensor:
    """H_p ∈ [0, 1] for every cell of a grid over (B, C, H, W) images in [0, 1] → (B, h, w).

    π_i = c_i² / Σ_j c_j²; H_p = −Σ π_i log π_i / log(#coefficients). A patch without detail
    gets 0. The approximation (the patch mean) is left out by default: on real images it holds
    over 90 % of the energy and squeezes every H_p towards 0 (MTSD: 0.004–0.09 with it,
    0.2–0.75 without).
    """
    b, _, height, width = images.shape
    gh, gw = grid
    ph, pw = height // gh, width // gw
    if ph * gh != height or pw * gw != width or ph != pw or ph & (ph - 1):
        raise ValueError(f"patches must be square powers of two: image {height}x{width}, grid {gh}x{gw}")
    full = int(math.log2(ph))
    levels = full if levels <= 0 else min(levels, full)
    grey = images.mean(dim=1)  # (B, H, W)
    patches = grey.reshape(b, gh, ph, gw, pw).permute(0, 1, 3, 2, 4).reshape(-1, ph, pw)
    bands = haar_dwt2(patches, levels)
    if not include_approximation:
        bands = bands[:-1]
    coefficients = torch.cat([c.flatten(1) for c in bands], dim=1)
    energy = coefficients.pow(2)
    total = energy.sum(dim=1, keepdim=True)
    probs = energy / total.clamp_min(1e-12)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum(dim=1) / math.log(coefficients.shape[1])
    entropy = torch.where(total[:, 0] > 0, entropy, torch.zeros_like(entropy))
    return entropy.reshape(b, gh, gw)


def patch_detail(images: Tensor, grid: tuple[int, int]) -> Tensor:
    """σ_p, the grey-level standard deviation of every cell of a grid over (B, C, H, W) → (B, h, w)."""
    b, _, height, width = images.shape
    gh, gw = grid
    if height % gh or width % gw:
        raise ValueError(f"image {height}x{width} does not divide into a {gh}x{gw} grid")
    grey = images.mean(dim=1)
    patches = grey.reshape(b, gh, height // gh, gw, width // gw).permute(0, 1, 3, 2, 4).flatten(3)
    return patches.std(dim=3, unbiased=False)


def level_costs(richness: Tensor, num_levels: int, alpha: float, floor: float, normalize: bool = False) -> Tensor:
    """u_{p,k} = u_p · α^{K−k} with u_p = 1 / max(r_p, ε); (B, h, w) → (B, K, h, w).

    r_p is the patch's richness: H_p (the paper) or σ_p (`patch_detail`). Level index 0 is the
    finest (most codes, most expensive), K − 1 the coarsest (costs u_p). normalize divides u_p
    by its batch mean, so costs are relative and λ_b alone sets the scale.
    """
    base = 1.0 / richness.clamp_min(floor)
    if normalize:
        base = base / base.mean().detach()
    factors = torch.tensor([alpha ** (num_levels - 1 - k) for k in range(num_levels)], device=richness.device)
    return base[:, None] * factors[None, :, None, None].to(base.dtype)


def budget_loss(scores: Tensor, costs: Tensor) -> Tensor:
    """L_budget = (1/N) Σ_p Σ_k s_{p,k} u_{p,k}, averaged over the batch too."""
    return (scores * costs).sum(dim=1).mean()


def budget_penalty(spend: Tensor, target: float) -> Tensor:
    """What λ_b multiplies: the spend itself (the paper), or only its excess over a target."""
    return spend if target <= 0 else torch.relu(spend - target)


def budget_weight(progress: float, lambda_max: float, schedule: str) -> float:
    """λ_b as a pure function of training progress ∈ [0, 1] (paper: linear from 0 is best)."""
    progress = min(max(progress, 0.0), 1.0)
    if schedule == "constant":
        return lambda_max
    if schedule == "cosine":
        return lambda_max * 0.5 * (1 - math.cos(math.pi * progress))
    if schedule == "linear":
        return lambda_max * progress
    raise ValueError(f"unknown budget schedule {schedule!r}")


__all__ = ["budget_loss", "budget_penalty", "budget_weight", "haar_dwt2", "level_costs", "patch_entropy"]
