"""Budget Prior Transformer (methods.md §1.6): which code level is normal where.

Level maps are flattened in clockwise spiral order (outer ring first), a CLS token carries the
class (per-class prior) or one shared token (universal prior); trained by masked-token
prediction while everything else is frozen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def spiral_order(height: int, width: int) -> Tensor:
    """Raster indices of a (height, width) grid visited clockwise from the top-left, outside in."""
    order: list[int] = []
    top, bottom, left, right = 0, height - 1, 0, width - 1
    while top <= bottom and left <= right:
        order += [top * width + c for c in range(left, right + 1)]
        order += [r * width + right for r in range(top + 1, bottom + 1)]
        if top < bottom:
            order += [bottom * width + c for c in range(right - 1, left - 1, -1)]
        if left < right:
            order += [r * width + left for r in range(bottom - 1, top, -1)]
        top, bottom, left, right = top + 1, bottom - 1, left + 1, right - 1
    return torch.tensor(order, dtype=torch.long)


class BudgetPriorTransformer(nn.Module):
    def __init__(
        self, num_levels: int, grid: tuple[int, int], num_classes: int, mode: str, dim: int, heads: int, layers: int
    ) -> None:
        super().__init__()
        if mode not in ("per_class", "universal"):
            raise ValueError(f"prior mode must be per_class or universal, got {mode!r}")
        self.num_levels, self.mode = num_levels, mode
        self.register_buffer("order", spiral_order(*grid), persistent=False)
        length = grid[0] * grid[1]
        self.mask_token = num_levels  # level tokens 0..K-1, then MASK
        self.level_embedding = nn.Embedding(num_levels + 1, dim)
        self.cls_embedding = nn.Embedding(num_classes if mode == "per_class" else 1, dim)
        self.position = nn.Parameter(0.02 * torch.randn(1, length + 1, dim))
        block = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_levels))

    def flatten(self, level_map: Tensor) -> Tensor:
        """(B, h, w) → (B, N) in spiral order."""
        return level_map.flatten(1)[:, self.order]

    def unflatten(self, sequence: Tensor, grid: tuple[int, int]) -> Tensor:
        """(B, N, ...) in spiral order → (B, h, w, ...) raster."""
        out = torch.empty_like(sequence)
        out[:, self.order] = sequence
        return out.reshape(sequence.shape[0], *grid, *sequence.shape[2:])

    def forward(self, tokens: Tensor, class_ids: Tensor) -> Tensor:
        """tokens (B, N) with MASK where hidden → logits (B, N, K)."""
        cls = class_ids if self.mode == "per_class" else torch.zeros_like(class_ids)
        x = torch.cat([self.cls_embedding(cls)[:, None], self.level_embedding(tokens)], dim=1) + self.position
        return self.head(self.blocks(x)[:, 1:])

    def loss(self, level_map: Tensor, class_ids: Tensor, mask_ratio: float) -> Tensor:
        """L_prior = −Σ_{i∈mask} log p(b_i | b_\\mask, cls), averaged over masked positions."""
        sequence = self.flatten(level_map)
        masked = torch.rand(sequence.shape, device=sequence.device) < mask_ratio
        masked[masked.sum(dim=1) == 0, 0] = True  # at least one masked position per sequence
        logits = self(sequence.masked_fill(masked, self.mask_token), class_ids)
        return F.cross_entropy(logits[masked], sequence[masked])

    @torch.no_grad()
    def predict_each_masked(self, level_map: Tensor, class_ids: Tensor) -> Tensor:
        """p̂_i for every position i with only i masked, batched → (B, K, h, w) probabilities."""
        b, h, w = level_map.shape
        sequence = self.flatten(level_map)  # (B, N)
        n = sequence.shape[1]
        copies = sequence[:, None, :].repeat(1, n, 1)  # (B, N copies, N)
        eye = torch.eye(n, dtype=torch.bool, device=sequence.device)[None].expand(b, n, n)
        copies = copies.masked_fill(eye, self.mask_token).reshape(b * n, n)
        logits = self(copies, class_ids.repeat_interleave(n)).reshape(b, n, n, -1)
        diagonal = logits[:, torch.arange(n), torch.arange(n)]  # (B, N, K): copy i at position i
        probs = diagonal.softmax(dim=-1)
        return self.unflatten(probs, (h, w)).permute(0, 3, 1, 2)
