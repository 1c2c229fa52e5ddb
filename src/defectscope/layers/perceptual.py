"""A perceptual reconstruction loss on a frozen ImageNet backbone.

VQ-GAN (and so PVQAE) trains with LPIPS beside the pixel loss; LPIPS needs VGG weights and
learned per-channel heads that we cannot ship. This is LPIPS's unweighted "baseline" distance
(Zhang et al., CVPR 2018, §3): per tap, unit-normalise the features along channels, take the
squared difference, sum over channels, average over positions, sum over taps. Any backbone of
`layers.backbones` serves; each taps once per stride from 2 to 16 unless told otherwise.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.layers.backbones import BackboneConfig, FrozenBackbone


def unit_channels(features: Tensor, eps: float = 1e-10) -> Tensor:
    """Each position's feature vector scaled to unit length (LPIPS's `normalize_tensor`)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


class PerceptualLoss(nn.Module):
    """Mean feature distance between images and reconstructions, both (B, 3, H, W) in [0, 1].

    Gradients flow into the reconstructions only; the backbone stays frozen and in eval mode.
    """

    def __init__(self, backbone: BackboneConfig, where: str = "model.backbone.") -> None:
        super().__init__()
        self.net = FrozenBackbone(backbone, "perceptual", where)

    def distance_maps(self, images: Tensor, reconstructions: Tensor) -> list[Tensor]:
        """Per tap, the (B, h, w) squared distance of the unit-normalised features."""
        with torch.no_grad():
            targets = self.net(images)
        return [
            (unit_channels(ours) - unit_channels(target)).pow(2).sum(dim=1)
            for ours, target in zip(self.net(reconstructions), targets, strict=True)
        ]

    def distance_map(self, images: Tensor, reconstructions: Tensor) -> Tensor:
        """(B, H, W): every tap's distance upsampled to the image and summed (LPIPS's spatial map)."""
        size = images.shape[-2:]
        return sum(
            F.interpolate(d[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            for d in self.distance_maps(images, reconstructions)
        )

    def forward(self, images: Tensor, reconstructions: Tensor) -> Tensor:
        return sum(d.mean() for d in self.distance_maps(images, reconstructions))
