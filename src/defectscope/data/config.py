"""Typed data settings; YAML `data:` sections map onto these."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from defectscope.checks import Check, Fraction, PathText, Seed, Side

from .limits import MAX_IMAGE_PIXELS  # the decoded-pixel cap; why 50 M: limits.py

# a share that must leave something on the other side: holding out all the normal images leaves
# nothing to train on
Share = Annotated[float, Check(low=0, high=1, high_open=True)]
# loader processes: each one a Python process with its own copy of the dataset; more than the
# cores of any one machine only queues them (and 2**31 of them never start)
MAX_WORKERS = 256
# Pillow's own decompression-bomb limit (PIL.Image.MAX_IMAGE_PIXELS): above it every decode warns,
# at twice it Pillow refuses, so data.max_image_pixels may be raised up to here and no further
PILLOW_MAX_IMAGE_PIXELS = 89_478_485
# batches: far above what a GPU holds at any working size
MAX_BATCH = 65536
Batch = Annotated[int, Check(low=1, high=MAX_BATCH)]


@dataclass(frozen=True)
class SourceConfig:
    """One category of one dataset on disk.

    layout "mvtec" also serves BTAD and VisA in MVTec's layout; "mtsd" is MTSD's native
    layout; "folder" is a folder of good images with optional defect/mask folders.
    """

    layout: Literal["mvtec", "btad", "mtsd", "folder"]
    root: PathText
    category: str = ""  # mvtec/btad: sub-folder of root; ignored by mtsd; folder: display name
    # folder layout only (paths relative to root unless absolute)
    good_dir: PathText = "good"
    defect_dir: PathText = ""  # empty: no defective images
    mask_dir: PathText = ""  # masks named like their images (any image suffix), optional `_mask` suffix
    test_good_dir: PathText = ""  # empty: split good images like MTSD


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

    @property
    def draws(self) -> bool:
        """Whether a training image comes out different from one epoch to the next."""
        return bool(self.hflip or self.vflip or self.brightness or self.contrast or self.saturation)


@dataclass(frozen=True)
class NoTiling:
    """The model sees each image whole, at the working size."""

    kind: Literal["none"] = "none"


@dataclass(frozen=True)
class Tiling:
    """The model sees square tiles of the working-size image; their maps are stitched into one.

    Training takes every tile of the inference grid (`all`: what a memory bank or per-position
    statistics must see), or draws `per_image` random tiles of each image per epoch, at a fresh
    place each time (`random`: more variety for a model trained by steps). Inference cuts each image on a grid of
    tiles `stride` apart, the last row and column flush with the image's edge, and merges
    overlapping tile maps by their mean or their max; the image score is the stitched map's max.
    """

    kind: Literal["tiles"] = "tiles"
    tile: Side = 256
    stride: Side = 192  # 256 − 192 = 64 px of overlap: a defect at a tile's edge is whole in its neighbour
    train: Literal["all", "random"] = "all"
    per_image: Annotated[int, Check(low=1, high=1024)] = 1  # train: random only
    merge: Literal["mean", "max"] = "mean"

    def problems(self) -> list[tuple[str, str]]:
        if self.stride > self.tile:
            return [("stride", f"must be at most tile ({self.tile}), or pixels between tiles are never seen; "
                               f"got {self.stride}")]
        return []


# 256²: the working size every shipped model was measured at (docs/results/geometry.md)
AUTO_PIXELS = 256 * 256


@dataclass(frozen=True)
class AutoSize:
    """The working size from the training images: their median aspect ratio at about `pixels` pixels.

    A stretched image keeps the shape of a typical part, so a long part is not squeezed along
    its length; each side is a multiple of `multiple` so the network's strides divide it. Models
    that need square inputs get the square of the same budget. The run resolves it once, before
    training, and records the result (`[height, width]`) in its config, checkpoint and results.
    """

    kind: Literal["auto"] = "auto"
    pixels: Annotated[int, Check(low=64, high=MAX_IMAGE_PIXELS)] = AUTO_PIXELS
    multiple: Annotated[int, Check(low=1, high=256)] = 32  # MobileNetV2 and EfficientNet's total stride


@dataclass(frozen=True)
class DataConfig:
    sources: tuple[SourceConfig, ...] = ()
    # the working size, one number (a square), [height, width], or `auto` (AutoSize: from the
    # training images' shape); with resize: none, images keep their own size and image_size is unused
    image_size: Side | tuple[Side, Side] | AutoSize = 256
    # stretch: to image_size exactly; keep_aspect: scale to fit inside image_size and centre on a
    # zero border the maps ignore; none: the image's own size (needs tiling, since images differ)
    resize: Literal["stretch", "keep_aspect", "none"] = "stretch"
    tiling: NoTiling | Tiling = field(default_factory=NoTiling)
    batch_size: Batch = 8
    eval_batch_size: Batch = 16
    num_workers: Annotated[int, Check(low=0, high=MAX_WORKERS)] = 0
    validation_fraction: Share = 0.1  # normal training images held out to calibrate thresholds
    # which ones: drawn at random (split.seed), or the last by file name, as a line's newest parts
    # would be (names that count up or carry a date); eval.calibration: cross_fit uses them all
    validation_order: Literal["random", "newest"] = "random"
    split: SplitConfig = field(default_factory=SplitConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    cache: bool = True  # keep decoded, resized images in memory (uint8)
    skip_bad: bool = False  # warn and skip unreadable files instead of failing
    # larger images are refused before decoding
    max_image_pixels: Annotated[int, Check(low=1, high=PILLOW_MAX_IMAGE_PIXELS)] = MAX_IMAGE_PIXELS

    def problems(self) -> list[tuple[str, str]]:
        if isinstance(self.image_size, AutoSize) and isinstance(self.tiling, Tiling):
            return [("image_size", "auto spreads the pixel budget over whole images, so a long part's short side "
                                   "would fall below the tile and every tile be padded; with data.tiling give the "
                                   "working size ([height, width]), or resize: none to tile each image at its "
                                   "own size")]
        if self.resize == "none" and isinstance(self.tiling, NoTiling):
            return [("resize", "'none' keeps every image at its own size, so the model needs tiles of one size: "
                               "set data.tiling (e.g. {kind: tiles, tile: 256, stride: 192})")]
        return []

    @property
    def model_input_size(self) -> int | tuple[int, int]:
        """What the model sees: a tile side, or the working size (resolved: never `auto`)."""
        if isinstance(self.tiling, Tiling):
            return self.tiling.tile
        size = self.image_size
        if isinstance(size, AutoSize):
            raise ValueError("data.image_size: auto is resolved from the training images before a model is "
                             "built (engine.working_size.resolve_working_size)")
        if isinstance(size, tuple) and size[0] == size[1]:
            return size[0]
        return size
