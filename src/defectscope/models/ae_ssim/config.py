"""AE-SSIM settings (Bergmann et al., "Improving Unsupervised Defect Segmentation by Applying
Structural Similarity to Autoencoders", VISAPP 2019, arXiv:1807.02011)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from defectscope.checks import Fraction, Side, Sigma, Width


@dataclass(frozen=True)
class AESSIMConfig:
    latent_dim: Width = 100  # the paper's d for textures; a 1×1 bottleneck
    base_channels: Width = 32  # widths 32, 32, 32, 64, 64, 128, 64, 32 (paper Table 1)
    ssim_window: Side = 11  # the paper uses 11×11 windows
    smoothing_sigma: Sigma = 4.0  # Gaussian smoothing of the 1 − SSIM map
    image_score: Literal["max", "topk_mean"] = "max"
    topk: Fraction = 0.01  # fraction of pixels averaged when image_score = topk_mean
