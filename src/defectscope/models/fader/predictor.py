"""Φ_FADeR: patch-wise reconstruction-error predictors (Eq. 2) and the soft mask (§3.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.models.fader.config import FaderStage, ViTFader


def tokenize(images: Tensor, m: int) -> Tensor:
    """τ: (B, C, H, W) → (B, n, C·m²) non-overlapping m×m patches, row-major over the grid."""
    return F.unfold(images, kernel_size=m, stride=m).transpose(1, 2)


class MLPPredictor(nn.Module):
    """The paper's two-layer MLP: each patch on its own, no context."""

    def __init__(self, token_dim: int, hidden: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(token_dim, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, tokens: Tensor) -> Tensor:
        return self.net(tokens)[..., 0]  # (B, n)


class ViTPredictor(nn.Module):
    """Table 3's ViT alternative (small here): patches attend to each other before the head."""

    def __init__(self, token_dim: int, num_tokens: int, dim: int, depth: int, heads: int) -> None:
        super().__init__()
        self.embed = nn.Linear(token_dim, dim)
        self.pos = nn.Parameter(torch.zeros(1, num_tokens, dim))
        nn.init.trunc_normal_(self.pos, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, 4 * dim, dropout=0.0, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, 1)

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.shape[1] != self.pos.shape[1]:
            raise ValueError(f"fader: ViT predictor built for {self.pos.shape[1]} patches, got {tokens.shape[1]}")
        return self.head(self.norm(self.blocks(self.embed(tokens) + self.pos)))[..., 0]


def build_predictor(stage: FaderStage, patch: int, num_tokens: int, channels: int = 3) -> nn.Module:
    """Φ for the chosen FADeR variant, over tokens of `patch` × `patch` pixels."""
    token_dim = channels * patch**2
    if isinstance(stage, ViTFader):
        return ViTPredictor(token_dim, num_tokens, stage.dim, stage.depth, stage.heads)
    return MLPPredictor(token_dim, stage.hidden)


def normalise_per_image(pred: Tensor) -> Tensor:
    """Min-max per image to [0, 1]; a constant prediction maps to 0 (nothing stands out)."""
    lo = pred.amin(dim=1, keepdim=True)
    span = pred.amax(dim=1, keepdim=True) - lo
    return (pred - lo) / span.clamp_min(1e-12)


def attenuation_mask(pred: Tensor, grid: tuple[int, int], kind: str = "soft", threshold: float = 0.5) -> Tensor:
    """M_S = 1 − normalised l̂ (soft) or 0 where it reaches `threshold` (hard): (B, 1, h, w)."""
    norm = normalise_per_image(pred)
    mask = 1.0 - norm if kind == "soft" else (norm < threshold).to(pred.dtype)
    return mask.reshape(pred.shape[0], 1, *grid)
