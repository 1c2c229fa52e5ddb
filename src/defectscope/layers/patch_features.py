"""Patch features from several backbone stages on one grid, shared by PatchCore and PaDiM.

Each tap is (optionally) averaged over its local neighbourhood — PatchCore's aggregation, a
p×p average with stride 1 that widens every patch's receptive field without losing
resolution (Roth et al. 2022, Sec. 3.1) — then resized to the first (finest) tap's grid and
concatenated along channels (PaDiM, Defard et al. 2021, Sec. 3.1, and PatchCore alike).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.layers.backbones import FrozenBackbone
from defectscope.layers.feature_cache import FeatureCache
from defectscope.layers.onnx_features import OnnxFeatures, exporting


def aggregate_taps(
    features: list[Tensor], neighbourhood: int = 3, mode: Literal["bilinear", "nearest"] = "bilinear"
) -> Tensor:
    """[(B, C_i, h_i, w_i)] → (B, Σ C_i, h_0, w_0)."""
    size = features[0].shape[-2:]
    out = []
    for f in features:
        if neighbourhood > 1:
            f = F.avg_pool2d(f, neighbourhood, stride=1, padding=neighbourhood // 2)
        if f.shape[-2:] != size:
            f = F.interpolate(f, size=size, mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))
        out.append(f)
    return torch.cat(out, dim=1)


class PatchFeatures(nn.Module):
    """Frozen backbone + tap aggregation: images in [0, 1] → (B, C, h, w) patch features."""

    def __init__(self, backbone: FrozenBackbone, neighbourhood: int = 3,
                 mode: Literal["bilinear", "nearest"] = "bilinear") -> None:
        super().__init__()
        if neighbourhood < 1 or neighbourhood % 2 == 0:
            raise ValueError(f"neighbourhood must be an odd size ≥ 1, got {neighbourhood}")
        self.backbone, self.neighbourhood, self.mode = backbone, neighbourhood, mode
        self.channels = sum(backbone.tap_channels)
        self.stride = backbone.tap_strides[0]
        self.onnx: OnnxFeatures | None = None  # set by `use_onnxruntime` for scoring on the CPU
        self.cache: FeatureCache | None = None  # set by `share_cache` while a run reuses its images
    def share_cache(self, cache: FeatureCache | None) -> None:
        """Take the backbone's maps of images seen before from `cache` (and keep new ones there), in torch and
        without gradient only; None: compute every time."""
        self.cache = cache

    def use_onnxruntime(self, threads: int | None, size: tuple[int, int] | None = None) -> None:
        """Compute features with onnxruntime from now on (float32 images on the CPU, no gradient, outside
        an export), its graph for (height, width) images built now; None threads: back to torch. The
        sessions hold the weights of this moment: after loading others, call it again."""
        self.onnx = None
        if threads is not None:
            self.onnx = OnnxFeatures(_TorchPatchFeatures(self), threads, size)

    def grid(self, image_size: int) -> int:
        """Side of the feature grid for a square image (ceil division, as the convolutions pad)."""
        return -(-image_size // self.stride)

    def forward(self, images: Tensor) -> Tensor:
        if self.cache is not None and not torch.is_grad_enabled() and not exporting():
            taps = self.cache.features(self.backbone.identity(), images, self.backbone)
            return aggregate_taps(taps, self.neighbourhood, self.mode)
        if (self.onnx is not None and images.device.type == "cpu" and images.dtype == torch.float32
                and not images.requires_grad and not exporting()):
            found = self.onnx(images)
            if found is not None:
                return found
        return self.torch_features(images)

    def torch_features(self, images: Tensor) -> Tensor:
        """The features computed by torch, whatever runtime `forward` is set to (what gets exported)."""
        return aggregate_taps(self.backbone(images), self.neighbourhood, self.mode)


class _TorchPatchFeatures(nn.Module):
    """A PatchFeatures' torch computation as a module of its own, for the exporter."""

    def __init__(self, features: PatchFeatures) -> None:
        super().__init__()
        self.features = features

    def forward(self, images: Tensor) -> Tensor:
        return self.features.torch_features(images)


def jitter_features(features: Tensor, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """UniAD's feature jittering: noise of std scale · ‖f‖ / C at each position of (B, C, h, w)."""
    if scale <= 0:
        return features
    std = features.norm(dim=1, keepdim=True) * (scale / features.shape[1])
    noise = torch.randn(features.shape, generator=generator, device=features.device, dtype=features.dtype)
    return features + noise * std
