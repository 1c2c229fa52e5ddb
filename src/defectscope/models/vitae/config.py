"""ViT-AE settings (Yang & Guo, "An Unsupervised Method for Industrial Image Anomaly Detection
with Vision Transformer-Based Autoencoder", Sensors 2024, 24, 2440, doi:10.3390/s24082440).

Defaults are the paper's (section 4.2) where it gives them; the rest are marked open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from defectscope.checks import Check, Count, Fraction, Layers, PositiveWeight, Side, Sigma, Weight, Width


@dataclass(frozen=True)
class ViTAEConfig:
    # --- ViT encoder (section 3.1, Eq. 4-6)
    patch_size: Side = 16  # P
    embed_dim: Width = 768  # D
    depth: Layers = 12  # L; not printed: "the network's default configuration" read as ViT-B
    num_heads: Layers = 8
    # ViT-B's MLP width 3072 = 4 · 768; 16 keeps embed_dim · mlp_ratio within a few Width
    mlp_ratio: Annotated[float, Check(low=0, high=16, low_open=True)] = 4.0
    dropout: Annotated[float, Check(low=0, high=1, high_open=True)] = 0.0
    # --- memory module (section 3.2, Eq. 7-10; MemAE, Gong et al. 2019)
    memory: bool = True  # Table 6 ablation switch "M"
    memory_items: Count = 500  # N: not printed (open); MemAE uses 100 for images, 2000 for video
    # cos / τ inside the softmax. The paper's Eq. 8 is τ = 1, but cosines in [-1, 1] then give
    # w_i ≈ 1/N for every item and the λ = 1/N shrinkage keeps a near-uniform average (open)
    memory_temperature: PositiveWeight = 0.05
    shrink_threshold: Weight = 0.0  # λ; 0 means the paper's 1/N
    shrink_epsilon: PositiveWeight = 1e-12  # ε of Eq. 10
    # --- coordinate attention between memory and decoder (section 3.3)
    coord_attention: bool = True  # Table 6 ablation switch "CA"
    ca_reduction: Width = 32  # Hou et al.'s reduction ratio
    # --- decoder (section 3.4): six transposed convolutions, BN + ReLU, tanh on the last.
    # log2(P) of them upsample by 2, the other 6 − log2(P) keep the size (3×3, stride 1) (open).
    decoder_channels: tuple[Width, ...] = (512, 256, 128, 64, 32)  # outputs of the first five
    size_keeping: Literal["end", "start"] = "end"  # where the stride-1 layers sit (open)
    # --- loss (section 3.5, Eq. 11-15)
    recon_weight: Weight = 1.0  # λ_recon
    ssim_weight: Weight = 1.0  # λ of Eq. 13: not printed (open)
    ssim_window: Side = 11  # "block-based" SSIM; the window is not printed (open), 11 as AE-SSIM
    entropy_weight: Weight = 0.001  # λ_ent
    # --- scoring (section 4.2): reconstruction error, Gaussian-smoothed
    anomaly_map: Literal["l2_ssim", "l2", "ssim"] = "l2_ssim"  # l2_ssim: the per-pixel training loss
    smoothing_sigma: Sigma = 4.0
    image_score: Literal["max", "topk_mean"] = "max"
    topk: Fraction = 0.01
