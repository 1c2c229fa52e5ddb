"""PaDiM settings (Defard et al., "PaDiM: a Patch Distribution Modeling Framework for Anomaly
Detection and Localization", ICPR 2021 workshops, arXiv:2011.08785)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from defectscope.layers.backbones import DEFAULT_MOBILENET_WEIGHTS


@dataclass(frozen=True)
class PaDiMConfig:
    backbone: Literal["mobilenet_v2", "resnet18", "wide_resnet50_2"] = "mobilenet_v2"
    backbone_path: str = DEFAULT_MOBILENET_WEIGHTS  # relative paths resolve against the current folder
    backbone_sha256: str = "published"  # "published": the file's published sum; "": no check
    pretrained: bool = True  # False: random init (tests), no file read
    layers: tuple[int, ...] = ()  # (): the first three stages (MobileNetV2 blocks 3, 6, 13; ResNet layer1-3)
    n_features: int = 100  # random channel subset d (paper: 100 of 448 for ResNet-18)
    regularisation: float = 0.01  # ε of Σ + εI (paper: 0.01)
    smoothing_sigma: float = 4.0
    seed: int = 0  # picks the channel subset
