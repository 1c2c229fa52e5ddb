"""EAR's reconstruction-by-inpainting U-Net (FADeR §4.1), with a mask hook on every skip.

Encoder block: 3 × (conv 3×3 → BN → LeakyReLU), stride 2 on the third conv. Decoder block:
nearest ×2 upsampling, then 3 × (conv → BN → LeakyReLU). Skip connections at depths 1..D−1;
the deepest block has none (Eq. 4).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.models.fader.config import FADeRConfig


def _conv_bn_act(cin: int, cout: int, slope: float, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(slope)]


class EncoderBlock(nn.Sequential):
    def __init__(self, cin: int, cout: int, slope: float) -> None:
        super().__init__(
            *_conv_bn_act(cin, cout, slope), *_conv_bn_act(cout, cout, slope), *_conv_bn_act(cout, cout, slope, 2)
        )


class DecoderBlock(nn.Module):
    def __init__(self, cin: int, skip: int, cout: int, slope: float) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            *_conv_bn_act(cin + skip, cout, slope), *_conv_bn_act(cout, cout, slope), *_conv_bn_act(cout, cout, slope)
        )

    def forward(self, x: Tensor, skip: Tensor | None) -> Tensor:
        x = F.interpolate(x, scale_factor=2, mode="nearest")
        return self.convs(x if skip is None else torch.cat([x, skip], dim=1))


class Encoder(nn.Module):
    def __init__(self, cfg: FADeRConfig, in_channels: int = 3) -> None:
        super().__init__()
        chans = (in_channels, *cfg.channels)
        pairs = zip(chans, chans[1:], strict=False)
        self.blocks = nn.ModuleList(EncoderBlock(a, b, cfg.negative_slope) for a, b in pairs)

    def forward(self, x: Tensor) -> list[Tensor]:
        """Features of depths 1..D at H/2, H/4, …, H/2^D."""
        feats = []
        for block in self.blocks:
            x = block(x)
            feats.append(x)
        return feats


class Decoder(nn.Module):
    def __init__(self, cfg: FADeRConfig, out_channels: int = 3) -> None:
        super().__init__()
        c = cfg.channels
        depth = len(c)
        # block k (k = D−1 … 0) brings the resolution from H/2^(k+1) to H/2^k and takes the
        # skip of depth k (encoder output k−1, at H/2^k) for k ≥ 1
        self.blocks = nn.ModuleList(
            DecoderBlock(c[k], c[k - 1] if k >= 1 else 0, c[k - 1] if k >= 1 else c[0], cfg.negative_slope)
            for k in range(depth - 1, -1, -1)
        )
        self.head = nn.Conv2d(c[0], out_channels, 1)

    def forward(self, feats: list[Tensor], attenuation: Tensor | None = None, scaling: str = "nearest") -> Tensor:
        """Reconstruction in [-1, 1]; attenuation (B, 1, h, w) multiplies every skip (Eq. 4)."""
        x = feats[-1]
        skips = feats[:-1]
        for i, block in enumerate(self.blocks):
            k = len(self.blocks) - 1 - i
            skip = skips[k - 1] if k >= 1 else None
            if skip is not None and attenuation is not None:
                skip = skip * scale_mask(attenuation, skip.shape[-2:], scaling)
            x = block(x, skip)
        return torch.tanh(self.head(x))


def scale_mask(mask: Tensor, size: tuple[int, int] | torch.Size, mode: str = "nearest") -> Tensor:
    """Θ in Eq. 4: a (B, 1, h, w) mask at a skip connection's resolution."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    if mode == "nearest":
        return F.interpolate(mask, size=tuple(size), mode="nearest")
    return F.interpolate(mask, size=tuple(size), mode="bilinear", align_corners=False)


class InpaintingUNet(nn.Module):
    def __init__(self, cfg: FADeRConfig) -> None:
        super().__init__()
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    def forward(self, x: Tensor) -> Tensor:
        """The plain reconstruction in [-1, 1] of x in [-1, 1] (the obfuscated image)."""
        return self.decoder(self.encoder(x))
