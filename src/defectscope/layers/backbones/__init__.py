"""Pretrained CNN backbones written here (no torchvision, no timm), frozen, with feature taps.

`FrozenBackbone` wraps MobileNetV2, ResNet-18 or Wide-ResNet-50-2: it normalises [0, 1]
images with the ImageNet statistics, returns the outputs of the chosen stages, and reads its
pretrained weights from a local file the first time features are needed (`ensure_loaded`),
so a model restored from a checkpoint, which carries the backbone's weights, needs no file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from defectscope.layers.backbones.loader import (
    PUBLISHED_SHA256,
    BackboneWeightsError,
    load_into,
    read_state_dict,
    sha256_of,
)
from defectscope.layers.backbones.mobilenetv2 import MobileNetV2Features
from defectscope.layers.backbones.resnet import ResNetFeatures

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BACKBONES = ("mobilenet_v2", "resnet18", "wide_resnet50_2")
# where the shared MobileNetV2 file lies relative to the repository root (../shared/weights/README.md)
DEFAULT_MOBILENET_WEIGHTS = "../shared/weights/mobilenetv2_imagenet_features.safetensors"

# taps of the "two middle stages" (PatchCore) and of the first three stages (PaDiM)
MIDDLE_TAPS = {"mobilenet_v2": (6, 13), "resnet18": (2, 3), "wide_resnet50_2": (2, 3)}
FIRST_THREE_TAPS = {"mobilenet_v2": (3, 6, 13), "resnet18": (1, 2, 3), "wide_resnet50_2": (1, 2, 3)}


class FrozenBackbone(nn.Module):
    """A frozen, always-eval feature extractor; `taps` are block indices (MobileNetV2) or layers (ResNet)."""

    def __init__(self, name: str, taps: tuple[int, ...], path: str = "", sha256: str = "published",
                 pretrained: bool = True, setting: str = "model.backbone_path") -> None:
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"unknown backbone '{name}' (known: {', '.join(BACKBONES)})")
        if not taps or list(taps) != sorted(set(taps)):
            raise ValueError(f"backbone taps must be distinct and increasing, got {taps}")
        self.name, self.taps, self.path, self.sha256 = name, tuple(taps), path, sha256
        self.setting = setting  # the config key errors name for the path
        if name == "mobilenet_v2":
            if max(taps) > 18 or min(taps) < 0:
                raise ValueError(f"mobilenet_v2 taps are block indices 0…18, got {taps}")
            self.net: Any = MobileNetV2Features(last=max(taps))
            self.tap_channels = [self.net.channels[t] for t in taps]
            self.tap_strides = [MobileNetV2Features.STRIDES[t] for t in taps]
        else:
            if not set(taps) <= {1, 2, 3}:
                raise ValueError(f"{name} taps are layer numbers 1…3, got {taps}")
            self.net = ResNetFeatures(name)
            self.tap_channels = [self.net.channels[t - 1] for t in taps]
            self.tap_strides = [2 ** (t + 1) for t in taps]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.loaded = not pretrained  # random init needs no file
        super().train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)  # BatchNorm keeps its ImageNet statistics

    def ensure_loaded(self) -> None:
        """Read the pretrained weights from `path` once (a clear error when the file is missing)."""
        if self.loaded:
            return
        device = self.mean.device
        state = read_state_dict(Path(self.path), self.name, self.sha256, self.setting)
        load_into(self.net, state, self.path, self.name)
        self.net.to(device)
        self.loaded = True

    def state_dict(self, *args, destination=None, prefix="", keep_vars=False):  # noqa: ANN001, ANN201
        """Empty until the pretrained weights are in: a checkpoint must never carry the random
        numbers of a backbone not yet read (it would restore them as if pretrained)."""
        if self.loaded:
            return super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        return destination if destination is not None else {}

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:  # noqa: ANN001
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(k.startswith(prefix + "net.") for k in state_dict):
            self.loaded = True  # weights restored from a checkpoint

    def forward(self, images: Tensor) -> list[Tensor]:
        """images (B, 3, H, W) in [0, 1] → one feature map per tap."""
        self.ensure_loaded()
        return self.net((images - self.mean) / self.std, self.taps)


__all__ = [
    "BACKBONES",
    "DEFAULT_MOBILENET_WEIGHTS",
    "FIRST_THREE_TAPS",
    "MIDDLE_TAPS",
    "PUBLISHED_SHA256",
    "BackboneWeightsError",
    "FrozenBackbone",
    "read_state_dict",
    "sha256_of",
]
