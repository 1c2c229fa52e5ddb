"""Budget-aware scoring (docs/methods.md §1.7): S = S_budget ⊙ S_rec, Gaussian-smoothed."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth


def budget_score(levels: Tensor, prior_probs: Tensor) -> Tensor:
    """S_budget(p) = CE(b_p, p̂_p) = −log p̂_p[b_p]; (B, h, w) levels, (B, K, h, w) probs → (B, h, w)."""
    picked = prior_probs.gather(1, levels[:, None]).squeeze(1)
    return -torch.log(picked.clamp_min(1e-6))


def combine_scores(budget: Tensor, rec: Tensor, mode: str) -> Tensor:
    """Pixel score from S_budget (upsampled to pixels) and S_rec, both (B, H, W).

    product: the paper's; one_plus_product: (1 + S_budget) ⊙ S_rec (never zero where the
    reconstruction fails); sum: S_rec + mean(S_rec)·S_budget (comparable scales); rec/budget alone.
    """
    if mode == "product":
        return budget * rec
    if mode == "one_plus_product":
        return (1 + budget) * rec
    if mode == "sum":
        return rec + rec.flatten(1).mean(1)[:, None, None] * budget
    if mode == "rec":
        return rec
    if mode == "budget":
        return budget
    raise ValueError(f"unknown score mode {mode!r}")


def pixel_budget(budget: Tensor, size: tuple[int, int]) -> Tensor:
    """Coarse-grid S_budget → pixels (nearest), so each coarse patch keeps one value."""
    return F.interpolate(budget[:, None], size=size, mode="nearest")[:, 0]


def anomaly_map(budget: Tensor | None, rec: Tensor, mode: str, sigma: float) -> Tensor:
    if budget is None:
        mode = "rec"
        budget = torch.zeros_like(rec)
    return gaussian_smooth(combine_scores(budget, rec, mode), sigma)
