"""VQ-E settings: a standard VQ-VAE with one static-resolution codebook (van den Oord et al. 2017;
used for anomaly detection by Marimont & Tarroni, ISBI 2021), scored by L2 reconstruction error."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from defectscope.checks import Count, Fraction, OptionalLayers, Side, Sigma, Weight, Width


@dataclass(frozen=True)
class VQEConfig:
    hidden_channels: Width = 128
    residual_blocks: OptionalLayers = 2
    downsample: Side = 8  # 256 px → a 32×32 code grid, PVQAE's finest level
    num_codes: Count = 512
    code_dim: Width = 64
    beta: Weight = 0.25  # commitment weight (VQ-VAE)
    ema: bool = True  # EMA codebook updates (VQ-VAE appendix A.1); guards against collapse
    ema_decay: Fraction = 0.99
    kmeans_init: bool = True
    dead_code_threshold: Weight = 1.0  # restart codes whose EMA usage falls below this
    smoothing_sigma: Sigma = 4.0
    image_score: Literal["max", "topk_mean"] = "max"
    topk: Fraction = 0.01
