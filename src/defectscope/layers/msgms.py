"""Multi-scale gradient magnitude similarity (MSGMS), RIAD's map and loss.

Zavrtanik, Kristan, Skočaj, "Reconstruction by inpainting for visual anomaly detection",
Pattern Recognition 112 (2021); GMS after Xue et al., IEEE TIP 2014. Used by FADeR/EAR for
scoring (docs/methods.md §3). Gradients are padded (replicate) so the map stays aligned with the
image: the common port convolves without padding and its maps shift by a pixel per scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import box_blur, filter2d, median_blur
from torch import Tensor

GMS_C = 0.0026  # RIAD's stability constant for images in [0, 1]


def _prewitt_magnitude(grey: Tensor) -> Tensor:
    """|∇| of (B, 1, H, W) with Prewitt kernels (÷3, as RIAD), same size as the input."""
    kx = torch.tensor([[1.0, 0.0, -1.0]] * 3, device=grey.device, dtype=grey.dtype) / 3.0
    kernels = torch.stack([kx, kx.t()])  # (2, 3, 3): x and y
    g = torch.cat([filter2d(grey, k[None], border_type="replicate") for k in kernels], dim=1)
    return torch.sqrt(g.pow(2).sum(dim=1, keepdim=True) + 1e-12)


def gms_map(a: Tensor, b: Tensor, c: float = GMS_C) -> Tensor:
    """GMS = (2 g_a g_b + c) / (g_a² + g_b² + c) for (B, 1, H, W) grey images; 1 = same gradients."""
    ga, gb = _prewitt_magnitude(a), _prewitt_magnitude(b)
    return (2 * ga * gb + c) / (ga.pow(2) + gb.pow(2) + c)


def to_grey(images: Tensor) -> Tensor:
    """(B, C, H, W) → (B, 1, H, W), the channel mean (RGB or grey input alike)."""
    return images.mean(dim=1, keepdim=True)


def msgms_similarity(a: Tensor, b: Tensor, scales: int = 4, median: bool = True, c: float = GMS_C) -> Tensor:
    """Mean GMS over `scales` scales (1, 1/2, 1/4, …), upsampled to full size: (B, 1, H, W)."""
    a, b = to_grey(a), to_grey(b)
    if median:
        a, b = median_blur(a, 3), median_blur(b, 3)
    size = a.shape[-2:]
    total = torch.zeros_like(a)
    for s in range(scales):
        if s:
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
        g = gms_map(a, b, c)
        total = total + (g if s == 0 else F.interpolate(g, size=size, mode="bilinear", align_corners=False))
    return total / scales


def msgms_map(a: Tensor, b: Tensor, scales: int = 4, mean_filter: int = 21, median: bool = True) -> Tensor:
    """Anomaly map 1 − MSGMS, mean-filtered (RIAD: 21×21): (B, H, W), 0 where a and b agree."""
    amap = 1.0 - msgms_similarity(a, b, scales, median)
    if mean_filter > 1:
        amap = box_blur(amap, (mean_filter, mean_filter), border_type="reflect")
    return amap[:, 0]


def msgms_loss(a: Tensor, b: Tensor, scales: int = 4) -> Tensor:
    """RIAD's MSGMS loss: mean of 1 − MSGMS (no median filter, so every pixel gets a gradient)."""
    return (1.0 - msgms_similarity(a, b, scales, median=False)).mean()
