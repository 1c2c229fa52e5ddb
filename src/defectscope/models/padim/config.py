"""PaDiM settings (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
Detection and Localization", ICPR 2021 workshops, arXiv:2011.08785)."""

from __future__ import annotations

from dataclasses import dataclass, field

from defectscope.checks import Seed, Sigma, Weight, Width
from defectscope.layers.backbones.config import BackboneConfig


@dataclass(frozen=True)
class PaDiMConfig:
    # taps (): the first three stages, the last block at stride 4, 8 and 16 (paper: ResNet layer1-3)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    n_features: Width = 100  # random channel subset d (paper: 100 of 448 for ResNet-18)
    regularisation: Weight = 0.01  # ε of Σ + εI (paper: 0.01)
    smoothing_sigma: Sigma = 4.0
    seed: Seed = 0  # picks the channel subset
