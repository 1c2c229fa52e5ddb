"""Typed data settings; YAML `data:` sections map onto these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from defectscope.checks import Check, Fraction, NonNegativeInt, PositiveInt

# a share that must leave something on the other side: holding out all the normal images leaves
# nothing to train on
Share = Annotated[float, Check(low=0, high=1, high_open=True)]
# numpy's legacy seeding (under Fabric.seed_everything) takes only [0, 2**32 - 1]; one range for
# every seed, so a seed that works for the split also works for training
Seed = Annotated[int, Check(low=0, high=2**32 - 1)]

# Decoded-pixel cap (width x height), checked from the file header before decoding. 50 M admits
# a 4000 x 4000 camera image (16 M) and a 48 MP 8000 x 6000 sensor, and bounds one decoded image
# to 600 MB as the (3, H, W) float32 tensor the loaders return; it also stays below Pillow's own
# decompression-bomb warning (about 89 M), so no accepted image makes Pillow warn.
MAX_IMAGE_PIXELS = 50_000_000


@dataclass(frozen=True)
class SourceConfig:
    """One category of one dataset on disk.

    layout "mvtec" also serves BTAD and VisA in MVTec's layout; "mtsd" is MTSD's native
    layout; "folder" is a folder of good images with optional defect/mask folders.
    """

    layout: Literal["mvtec", "btad", "mtsd", "folder"]
    root: str
    category: str = ""  # mvtec/btad: sub-folder of root; ignored by mtsd; folder: display name
    # folder layout only (paths relative to root unless absolute)
    good_dir: str = "good"
    defect_dir: str = ""  # empty: no defective images
    mask_dir: str = ""  # masks named like their images (any image suffix), optional `_mask` suffix
    test_good_dir: str = ""  # empty: split good images like MTSD


@dataclass(frozen=True)
class SplitConfig:
    """Deterministic train/test split of normal images for layouts without one (MTSD, folder)."""

    test_fraction: Share = 0.2  # share of normal images held out for testing
    seed: Seed = 0


@dataclass(frozen=True)
class AugmentConfig:
    """Training-only augmentations (the PVQAE paper: random flips and colour jitter)."""

    hflip: bool = True
    vflip: bool = False
    brightness: Fraction = 0.0  # jitter factor range [1 - b, 1 + b]
    contrast: Fraction = 0.0
    saturation: Fraction = 0.0


@dataclass(frozen=True)
class DataConfig:
    sources: tuple[SourceConfig, ...] = ()
    image_size: PositiveInt = 256  # images are resized to image_size x image_size
    batch_size: PositiveInt = 8
    eval_batch_size: PositiveInt = 16
    num_workers: NonNegativeInt = 0
    validation_fraction: Share = 0.1  # normal training images held out to calibrate thresholds
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache: bool = True  # keep decoded, resized images in memory (uint8)
    skip_bad: bool = False  # warn and skip unreadable files instead of failing
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images are refused before decoding
