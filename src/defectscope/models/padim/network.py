"""PaDiM's feature extractor: frozen backbone, first three stages, nearest upsampling, no aggregation."""

from __future__ import annotations

from defectscope.layers.backbones import FrozenBackbone
from defectscope.layers.patch_features import PatchFeatures
from defectscope.models.padim.config import PaDiMConfig


def build_features(cfg: PaDiMConfig) -> PatchFeatures:
    backbone = FrozenBackbone(cfg.backbone, "first_three")
    return PatchFeatures(backbone, neighbourhood=1, mode="nearest")
