"""PatchCore's feature extractor: frozen backbone, two middle stages, 3×3 local aggregation."""

from __future__ import annotations

from defectscope.layers.backbones import FrozenBackbone
from defectscope.layers.patch_features import PatchFeatures
from defectscope.models.patchcore.config import PatchCoreConfig


def build_features(cfg: PatchCoreConfig) -> PatchFeatures:
    backbone = FrozenBackbone(cfg.backbone, "middle")
    return PatchFeatures(backbone, cfg.neighbourhood, "bilinear")
