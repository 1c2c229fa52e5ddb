"""PatchCore's feature extractor: frozen backbone, two middle stages, 3×3 local aggregation."""

from __future__ import annotations

from defectscope.layers.backbones import MIDDLE_TAPS, FrozenBackbone
from defectscope.layers.patch_features import PatchFeatures
from defectscope.models.patchcore.config import PatchCoreConfig


def build_features(cfg: PatchCoreConfig) -> PatchFeatures:
    taps = cfg.layers or MIDDLE_TAPS[cfg.backbone]
    backbone = FrozenBackbone(cfg.backbone, taps, cfg.backbone_path, cfg.backbone_sha256, cfg.pretrained)
    return PatchFeatures(backbone, cfg.neighbourhood, "bilinear")
