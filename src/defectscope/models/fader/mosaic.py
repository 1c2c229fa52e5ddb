"""EAR's visual obfuscation hint: inside the binary mask the image becomes its mosaic.

Park et al., "Excision and Recovery: Visual Defect Obfuscation Based Self-Supervised Anomaly
Detection Strategy" (arXiv:2310.04010). The mask lives on the m×m patch grid, so the mosaic
blocks, the masked region and FADeR's tokens line up (FADeR §3.2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def check_divisible(size: int, m: int, what: str = "image size") -> None:
    if m < 1 or size % m:
        raise ValueError(f"fader: {what} {size} is not divisible by the mosaic scale {m}")


def mosaic(images: Tensor, m: int) -> Tensor:
    """Pixelate (B, C, H, W) with m×m blocks: every block takes its mean colour."""
    check_divisible(images.shape[-1], m)
    check_divisible(images.shape[-2], m)
    return F.interpolate(F.avg_pool2d(images, m), scale_factor=m, mode="nearest")


def grid_to_pixels(grid: Tensor, m: int) -> Tensor:
    """(B, 1, h, w) patch-grid mask → (B, 1, h·m, w·m), each patch an m×m block."""
    return F.interpolate(grid, scale_factor=m, mode="nearest")


def obfuscate(images: Tensor, grid: Tensor, m: int) -> Tensor:
    """I' = I outside the mask, mosaic(I) inside; grid: (B, 1, H/m, W/m) in {0, 1}."""
    mask = grid_to_pixels(grid.to(images.dtype), m)
    return images * (1 - mask) + mosaic(images, m) * mask
