"""Tensor-only resizing and training augmentation (no torchvision).

Images are ``(3, H, W)`` float tensors in [0, 1] and masks ``(1, H, W)`` float tensors in
{0, 1}; the resize functions also take batches ``(B, C, H, W)``.

Augmentation (training only) follows the PVQAE paper: random flips and colour jitter. Flips
are applied to the image and its mask together so they stay aligned; colour jitter touches
the image only. All randomness comes from the ``torch.Generator`` passed in, so the same
generator state always gives the same augmentation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .config import AugmentConfig

__all__ = [
    "resize_image",
    "resize_mask",
    "hflip",
    "vflip",
    "adjust_brightness",
    "adjust_contrast",
    "adjust_saturation",
    "augment",
    "to_uint8",
    "from_uint8",
]

# ITU-R BT.601 luma weights, as PIL's convert("L") and torchvision use.
_LUMA = (0.299, 0.587, 0.114)


def _as_batch(x: Tensor) -> tuple[Tensor, bool]:
    if x.ndim == 3:
        return x.unsqueeze(0), True
    if x.ndim == 4:
        return x, False
    raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor, got shape {tuple(x.shape)}")


def _hw(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def resize_image(img: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize to ``size x size`` (or ``(height, width)``): bilinear with antialiasing (so
    downscaling does not alias), half-pixel centres (``align_corners=False``); clamped to [0, 1]."""
    batch, squeeze = _as_batch(img)
    hw = _hw(size)
    if tuple(batch.shape[-2:]) == hw:
        return img
    batch = F.interpolate(batch.float(), size=hw, mode="bilinear", align_corners=False, antialias=True).clamp_(0.0, 1.0)
    return batch.squeeze(0) if squeeze else batch


def resize_mask(mask: Tensor, size: int | tuple[int, int]) -> Tensor:
    """Resize a mask to ``size x size`` (or ``(height, width)``) with nearest-neighbour sampling,
    so it stays binary.

    Uses ``nearest-exact`` (half-pixel centres, like PIL's NEAREST and like the bilinear
    image resize) so mask and image stay aligned. The dtype is kept.
    """
    batch, squeeze = _as_batch(mask)
    hw = _hw(size)
    if tuple(batch.shape[-2:]) == hw:
        return mask
    batch = F.interpolate(batch.float(), size=hw, mode="nearest-exact").to(batch.dtype)
    return batch.squeeze(0) if squeeze else batch


def hflip(x: Tensor) -> Tensor:
    return x.flip(-1)


def vflip(x: Tensor) -> Tensor:
    return x.flip(-2)


def _grey(img: Tensor) -> Tensor:
    r, g, b = img.unbind(-3)
    return (_LUMA[0] * r + _LUMA[1] * g + _LUMA[2] * b).unsqueeze(-3)


def adjust_brightness(img: Tensor, factor: float) -> Tensor:
    """Multiply by ``factor`` (0 gives black, 1 the original)."""
    return (img * factor).clamp(0.0, 1.0)


def adjust_contrast(img: Tensor, factor: float) -> Tensor:
    """Blend with the image's mean grey level (0 gives flat grey, 1 the original)."""
    mean = _grey(img).mean(dim=(-3, -2, -1), keepdim=True)
    return (mean + factor * (img - mean)).clamp(0.0, 1.0)


def adjust_saturation(img: Tensor, factor: float) -> Tensor:
    """Blend with the per-pixel grey level (0 gives grey, 1 the original).

    A grey image (three equal channels) is its own grey level, so this leaves it unchanged.
    """
    grey = _grey(img)
    return (grey + factor * (img - grey)).clamp(0.0, 1.0)


def _factor(strength: float, generator: torch.Generator) -> float:
    """A factor uniform in ``[max(0, 1 - strength), 1 + strength]``."""
    low, high = max(0.0, 1.0 - strength), 1.0 + strength
    return low + (high - low) * float(torch.rand((), generator=generator))


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


def augment(image: Tensor, mask: Tensor, cfg: AugmentConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Random training augmentation of one ``(3, H, W)`` image and its ``(1, H, W)`` mask.

    In this fixed order: horizontal flip (p = 0.5, if ``cfg.hflip``), vertical flip (p = 0.5,
    if ``cfg.vflip``), both applied to image and mask; then brightness, contrast and
    saturation jitter (factor uniform in ``[1 - s, 1 + s]`` for strength ``s`` > 0), applied
    to the image only. Random numbers are drawn only for enabled steps, from ``generator``.
    """
    for name in ("brightness", "contrast", "saturation"):
        if getattr(cfg, name) < 0:
            raise ValueError(f"augment.{name} must be >= 0, got {getattr(cfg, name)}")
    if cfg.hflip and _coin(generator):
        image, mask = hflip(image), hflip(mask)
    if cfg.vflip and _coin(generator):
        image, mask = vflip(image), vflip(mask)
    if cfg.brightness > 0:
        image = adjust_brightness(image, _factor(cfg.brightness, generator))
    if cfg.contrast > 0:
        image = adjust_contrast(image, _factor(cfg.contrast, generator))
    if cfg.saturation > 0:
        image = adjust_saturation(image, _factor(cfg.saturation, generator))
    return image.contiguous(), mask.contiguous()


def to_uint8(img: Tensor) -> Tensor:
    """[0, 1] float -> uint8 (rounded), for compact caching."""
    return img.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def from_uint8(img: Tensor) -> Tensor:
    """uint8 -> float32 in [0, 1]."""
    return img.to(torch.float32).div_(255.0)
