"""Budget Prior Transformer (docs/methods.md §1.6): which code level is normal where.

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
        r"""L_prior = −Σ_{i∈mask} log p(b_i | b_\mask, cls), averaged over masked positions."""
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
        if self._single_block_exact():
            logits = self._each_masked_one_block(sequence, class_ids)
            return self.unflatten(logits.softmax(dim=-1), (h, w)).permute(0, 3, 1, 2)
        n = sequence.shape[1]
        copies = sequence[:, None, :].repeat(1, n, 1)  # (B, N copies, N)
        eye = torch.eye(n, dtype=torch.bool, device=sequence.device)[None].expand(b, n, n)
        copies = copies.masked_fill(eye, self.mask_token).reshape(b * n, n)
        logits = self(copies, class_ids.repeat_interleave(n)).reshape(b, n, n, -1)
        diagonal = logits[:, torch.arange(n), torch.arange(n)]  # (B, N, K): copy i at position i
        probs = diagonal.softmax(dim=-1)
        return self.unflatten(probs, (h, w)).permute(0, 3, 1, 2)

    def _single_block_exact(self) -> bool:
        layers = self.blocks.layers
        return len(layers) == 1 and layers[0].norm_first and self.blocks.norm is None

    def _each_masked_one_block(self, sequence: Tensor, class_ids: Tensor) -> Tensor:
        """The N masked copies of one pre-LN block in one pass → logits (B, N, K).

        Copy i differs from the plain sequence only in token i, so its output at i attends to
        the plain keys and values except at i, where the mask token's key and value sit: one
        N×N attention per image with the diagonal swapped, exactly what the copies compute, at
        1/N of the cost (the prior was a fifth of PVQAE's inference time).
        """
        layer = self.blocks.layers[0]
        attention = layer.self_attn
        b, n = sequence.shape
        heads, dim = attention.num_heads, self.position.shape[-1]
        head_dim = dim // heads
        cls = class_ids if self.mode == "per_class" else torch.zeros_like(class_ids)
        plain = torch.cat([self.cls_embedding(cls)[:, None], self.level_embedding(sequence)], dim=1) + self.position
        masked = self.level_embedding.weight[self.mask_token] + self.position[:, 1:]  # (1, N, D)
        w_q, w_k, w_v = attention.in_proj_weight.chunk(3)
        b_q, b_k, b_v = attention.in_proj_bias.chunk(3)

        def split(x: Tensor) -> Tensor:  # (B, L, D) → (B, heads, L, head_dim)
            return x.unflatten(-1, (heads, head_dim)).transpose(1, 2)

        normed, normed_masked = layer.norm1(plain), layer.norm1(masked).expand(b, -1, -1)
        keys, values = split(F.linear(normed, w_k, b_k)), split(F.linear(normed, w_v, b_v))
        query = split(F.linear(normed_masked, w_q, b_q))  # (B, h, N, d)
        key_self = split(F.linear(normed_masked, w_k, b_k))
        value_self = split(F.linear(normed_masked, w_v, b_v))
        scores = query @ keys.transpose(-1, -2) / head_dim**0.5  # (B, h, N, N+1): query i, key j
        diagonal = torch.arange(n, device=sequence.device)
        scores[:, :, diagonal, diagonal + 1] = (query * key_self).sum(-1) / head_dim**0.5
        weights = scores.softmax(dim=-1)
        mixed = weights @ values  # uses the plain value at i: swap it for the mask token's
        mixed = mixed + weights[:, :, diagonal, diagonal + 1, None] * (value_self - values[:, :, 1:])
        x = masked + attention.out_proj(mixed.transpose(1, 2).flatten(2))
        x = x + layer.linear2(layer.activation(layer.linear1(layer.norm2(x))))
        return self.head(x)
