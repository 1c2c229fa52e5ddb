"""PaDiM's feature extractor: frozen backbone, first three stages, nearest upsampling, no aggregation."""

from __future__ import annotations

from defectscope.layers.backbones import FIRST_THREE_TAPS, FrozenBackbone
from defectscope.layers.patch_features import PatchFeatures
from defectscope.models.padim.config import PaDiMConfig


def build_features(cfg: PaDiMConfig) -> PatchFeatures:
    taps = cfg.layers or FIRST_THREE_TAPS[cfg.backbone]
    backbone = FrozenBackbone(cfg.backbone, taps, cfg.backbone_path, cfg.backbone_sha256, cfg.pretrained)
    return PatchFeatures(backbone, neighbourhood=1, mode="nearest")
