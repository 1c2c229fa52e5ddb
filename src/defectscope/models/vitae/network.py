"""ViT encoder (Dosovitskiy et al. 2020, arXiv:2010.11929; ViT-AE Eq. 4-6), memory, coordinate
attention and decoder, wired as in the ViT-AE paper's Figure 2."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.layers.coord_attention import CoordAttention
from defectscope.models.vitae.config import ViTAEConfig
from defectscope.models.vitae.decoder import Decoder
from defectscope.models.vitae.memory import Memory


class Attention(nn.Module):
    """Multi-head self-attention (Eq. 1-3) with PyTorch's fused scaled-dot-product kernel."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"vitae: embed_dim {dim} is not divisible by num_heads {heads}")
        self.heads = heads
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)  # 3 × (B, h, N, d/h)
        x = F.scaled_dot_product_attention(q, k, v, dropout_p=self.dropout if self.training else 0.0)
        return self.proj(x.transpose(1, 2).reshape(b, n, d))


class Block(nn.Module):
    """Pre-LN transformer layer: z' = MSA(LN(z)) + z, z = MLP(LN(z')) + z' (Eq. 5-6)."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float, dropout: float = 0.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, dim),
                                 nn.Dropout(dropout))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTEncoder(nn.Module):
    """Image → patch tokens + CLS + learned positions → L layers → (B, D, H/P, W/P) feature map F."""

    def __init__(self, cfg: ViTAEConfig, image_size: int, in_channels: int = 3) -> None:
        super().__init__()
        p, d = cfg.patch_size, cfg.embed_dim
        if image_size % p:
            raise ValueError(f"vitae: image_size {image_size} is not divisible by patch_size {p}")
        self.grid = image_size // p
        # a P×P conv with stride P is the linear patch embedding E of Eq. 4
        self.patch_embed = nn.Conv2d(in_channels, d, p, stride=p)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid**2 + 1, d))  # E_pos ∈ R^{(N+1)×D}
        self.blocks = nn.Sequential(*[Block(d, cfg.num_heads, cfg.mlp_ratio, cfg.dropout) for _ in range(cfg.depth)])
        self.norm = nn.LayerNorm(d)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        tokens = self.patch_embed(x).flatten(2).transpose(1, 2)  # (B, N, D)
        tokens = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), tokens], dim=1) + self.pos_embed
        tokens = self.norm(self.blocks(tokens))[:, 1:]  # the CLS token has no place in the map
        return tokens.transpose(1, 2).reshape(x.shape[0], -1, self.grid, self.grid)


class ViTAEOutput(NamedTuple):
    reconstruction: Tensor  # (B, 3, H, W) in [-1, 1]
    weights: Tensor | None  # (B, H/P, W/P, N) memory addressing weights; None without memory


class ViTAutoEncoder(nn.Module):
    """Encoder → memory (optional) → coordinate attention (optional) → decoder."""

    def __init__(self, cfg: ViTAEConfig, image_size: int) -> None:
        super().__init__()
        self.encoder = ViTEncoder(cfg, image_size)
        d = cfg.embed_dim
        self.memory = (
            Memory(cfg.memory_items, d, cfg.memory_temperature, cfg.shrink_threshold, cfg.shrink_epsilon)
            if cfg.memory else None
        )
        self.coord_attention = CoordAttention(d, cfg.ca_reduction) if cfg.coord_attention else None
        self.decoder = Decoder(d, cfg.decoder_channels, cfg.patch_size, cfg.size_keeping)

    def forward(self, x: Tensor) -> ViTAEOutput:
        """x in [-1, 1]."""
        features = self.encoder(x)
        weights = None
        if self.memory is not None:
            features, weights = self.memory(features)
        if self.coord_attention is not None:
            features = self.coord_attention(features)
        return ViTAEOutput(self.decoder(features), weights)
