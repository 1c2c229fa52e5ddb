"""The torch Dataset over :class:`Record` lists, and the builder from a :class:`DataConfig`."""

from __future__ import annotations

import dataclasses
import os
import random
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from defectscope.checks import Text
from defectscope.errors import shown

from .config import MAX_IMAGE_PIXELS, AugmentConfig, DataConfig, SourceConfig, Tiling
from .errors import DataError
from .geometry import Box, Resize, as_hw, cut_tiles, fit, fitted_box, tile_grid
from .image_io import image_size, load_image, load_mask
from .layouts import records_for
from .sample import Record, Sample
from .transforms import augment as augment_pair
from .transforms import from_uint8, to_uint8

__all__ = [
    "AnomalyDataset",
    "DataBundle",
    "RecordSplit",
    "SkippedFilesWarning",
    "TiledTrainingSet",
    "build_datasets",
    "build_records",
    "hold_out",
]


class SkippedFilesWarning(UserWarning):
    """Bad files were skipped (``skip_bad=True``); the message lists each with its problem."""


def _format_skipped(problems: Sequence[str], total: int) -> str:
    lines = "\n  ".join(problems)
    return f"skipped {len(problems)} of {total} images with bad files:\n  {lines}"


class AnomalyDataset(Dataset):
    """Decoded, resized images with their masks, as :class:`Sample` items.

    Args:
        records: what a layout reader returned (any mix of categories).
        class_ids: ``{category: class_id}``; every record's category must be in it. ``None``
            numbers the categories in order of first appearance.
        image_size: the working size, one number (square) or (height, width); images and
            masks are brought to it by ``resize`` (image: bilinear + antialias, mask: nearest).
        resize: ``stretch``, ``keep_aspect`` (fit inside, zero border recorded in ``box``) or
            ``none`` (the image's own size; items then differ in size).
        augment: training augmentation (flips on image and mask, colour jitter on the image),
            or ``None`` for none (validation / test).
        cache: keep every decoded, resized image as uint8 (mask as bool) in memory, so an epoch
            does not decode files again. The cache is filled at construction, in the main
            process, so DataLoader workers share it. Cached images are quantised to 8 bits.
        skip_bad: check every file at construction (decode image and mask, compare sizes) and
            drop records with a problem; ONE :class:`SkippedFilesWarning` lists every skipped
            file with its problem. Without it, construction checks only that files exist and
            the first bad file raises :class:`DataError` (at construction with ``cache``,
            otherwise when the item is loaded).
        seed: augmentation randomness. ``None``: each item draws a seed from torch's global
            generator (reproducible under ``torch.manual_seed``; DataLoader workers are seeded
            apart by torch). An int: item ``i`` in epoch ``e`` (see :meth:`set_epoch`) uses a
            generator seeded from ``(seed, e, i)``, independent of loading order and workers.
        warn_skipped: emit the skip warning (``build_datasets`` gathers them into one).
        max_image_pixels: images and masks with more pixels (width x height, read from the
            header) are refused with DataError before decoding (``data.max_image_pixels``).

    Items: image ``(3, S, S)`` float32 in [0, 1], mask ``(1, S, S)`` float32 in {0, 1}
    (all zero for records without a mask), label (0 good, 1 defective), class_id, path.
    A mask whose size differs from its image's raises DataError naming both files. A DataError
    raised while a DataLoader worker loads an item reaches the main process with its own message.
    """

    def __init__(
        self,
        records: Sequence[Record],
        class_ids: dict[str, int] | None = None,
        image_size: int | tuple[int, int] = 256,
        augment: AugmentConfig | None = None,
        cache: bool = False,
        skip_bad: bool = False,
        *,
        seed: int | None = None,
        warn_skipped: bool = True,
        max_image_pixels: int = MAX_IMAGE_PIXELS,
        resize: Resize = "stretch",
    ) -> None:
        if min(as_hw(image_size)) <= 0:
            raise ValueError(f"image_size must be positive, got {image_size}")
        if resize not in ("stretch", "keep_aspect", "none"):
            raise ValueError(f"resize must be 'stretch', 'keep_aspect' or 'none', got {resize!r}")
        self.resize: Resize = resize
        records = list(records)
        if class_ids is None:
            class_ids = {}
            for record in records:
                class_ids.setdefault(record.category, len(class_ids))
        self.class_ids = dict(class_ids)
        self.image_size = as_hw(image_size)
        if isinstance(max_image_pixels, bool) or not isinstance(max_image_pixels, int) or max_image_pixels <= 0:
            raise DataError(f"data.max_image_pixels must be a positive integer, got {max_image_pixels!r}")
        self.max_image_pixels = max_image_pixels
        self.augment = augment
        self.cache = cache
        self.skip_bad = skip_bad
        self.seed = seed
        self.epoch = 0
        self.skipped: list[str] = []  # "path: problem" for each record dropped by skip_bad

        for record in records:
            if record.category not in self.class_ids:
                raise DataError(
                    f"{record.image_path}: category {record.category!r} has no class id "
                    f"(known: {sorted(self.class_ids)})"
                )
            if record.label not in (0, 1):
                raise DataError(f"{record.image_path}: label must be 0 or 1, got {record.label}")
            if record.label == 1 and record.mask_path is None:
                raise DataError(f"{record.image_path}: defective image has no mask")

        kept: list[Record] = []
        for record in records:
            problem = self._missing_file(record)
            if problem is None:
                kept.append(record)
            elif skip_bad:
                self.skipped.append(problem)
            else:
                raise DataError(problem)

        self._images: list[Tensor] = []
        self._masks: list[Tensor] = []
        self._placement: list[tuple[Box, tuple[int, int]]] = []
        if skip_bad or cache:
            checked: list[Record] = []
            for record in kept:
                try:
                    image, mask, box, original = self._decode(record)
                except DataError as exc:
                    if not skip_bad:
                        raise
                    self.skipped.append(str(exc))
                    continue
                checked.append(record)
                if cache:
                    self._images.append(to_uint8(image))
                    self._masks.append(mask.bool())
                    self._placement.append((box, original))
            kept = checked
        self.records: list[Record] = kept
        if self.skipped and warn_skipped:
            warnings.warn(_format_skipped(self.skipped, len(records)), SkippedFilesWarning, stacklevel=2)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _missing_file(record: Record) -> str | None:
        for path in (record.image_path, record.mask_path):
            if path is not None and not Path(path).is_file():
                return f"{path}: file not found"
        return None

    def _decode(self, record: Record) -> tuple[Tensor, Tensor, Box, tuple[int, int]]:
        """Decode, size-check and fit one record: float image, float {0, 1} mask, the image's box, its size."""
        image = load_image(record.image_path, self.max_image_pixels)
        height, width = image.shape[-2:]
        if record.mask_path is not None:
            mask = load_mask(record.mask_path, self.max_image_pixels)
            if mask.shape[-2:] != image.shape[-2:]:
                raise DataError(
                    f"{record.mask_path}: mask size {mask.shape[-1]}x{mask.shape[-2]} differs "
                    f"from its image {record.image_path} ({width}x{height})"
                )
            mask, _ = fit(mask, self.image_size, self.resize, nearest=True)
        else:
            canvas, _ = fitted_box((height, width), self.image_size, self.resize)
            mask = torch.zeros(1, *canvas)
        image, box = fit(image, self.image_size, self.resize)
        # 8 bits at the working size, cached or not: what every scorer sees (scoring.resize.fit_array)
        return from_uint8(to_uint8(image)), mask, box, (height, width)

    def _generator(self, index: int) -> torch.Generator:
        if self.seed is None:
            seed = int(torch.randint(0, 2**62, ()).item())
        else:
            seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        return torch.Generator().manual_seed(seed)

    # ------------------------------------------------------------------ public

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation of every item when ``seed`` is an int (call once per epoch)."""
        self.epoch = int(epoch)

    def size_of(self, index: int) -> tuple[int, int]:
        """(height, width) of item ``index`` at the working size, without decoding it twice."""
        if self.cache:
            return tuple(self._images[index].shape[-2:])
        width, height = image_size(self.records[index].image_path)
        return fitted_box((height, width), self.image_size, self.resize)[0]

    @property
    def labels(self) -> list[int]:
        return [record.label for record in self.records]

    @property
    def class_names(self) -> list[str]:
        return [name for name, _ in sorted(self.class_ids.items(), key=lambda kv: kv[1])]

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> Sample:
        record = self.records[index]
        if self.cache:
            image = from_uint8(self._images[index])
            mask = self._masks[index].to(torch.float32)
            box, original = self._placement[index]
        else:
            image, mask, box, original = self._decode(record)
        if self.augment is not None:
            image, mask = augment_pair(image, mask, self.augment, self._generator(index))
        return Sample(
            image=image,
            mask=mask,
            label=record.label,
            class_id=self.class_ids[record.category],
            path=str(record.image_path),
            box=torch.tensor(box, dtype=torch.int64),
            original_size=torch.tensor(original, dtype=torch.int64),
        )


class TiledTrainingSet(Dataset):
    """Square training tiles of an :class:`AnomalyDataset`'s (augmented) images.

    ``train: random`` gives ``per_image`` items per image, each a tile at a place drawn afresh
    every epoch (uniform over all places, not only the inference grid); ``all`` gives every tile
    of the inference grid of every image. A tile that reaches past a small image is zero-padded
    and its ``box`` says where the image's own pixels are.
    """

    def __init__(self, base: AnomalyDataset, tiling: Tiling, seed: int | None = None) -> None:
        self.base, self.tiling, self.seed, self.epoch = base, tiling, seed, 0
        self.grid: list[tuple[int, tuple[int, int]]] = []
        if tiling.train == "all":
            self.grid = [(i, origin) for i in range(len(base))
                         for origin in tile_grid(base.size_of(i), tiling.tile, tiling.stride)]

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)
        self.base.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.grid) if self.tiling.train == "all" else len(self.base) * self.tiling.per_image

    def __getitem__(self, index: int) -> Sample:
        tile = self.tiling.tile
        if self.tiling.train == "all":
            image_index, (top, left) = self.grid[index]
            sample = self.base[image_index]
        else:
            sample = self.base[index // self.tiling.per_image]
            height, width = sample.image.shape[-2:]
            seed = (int(torch.randint(0, 2**62, ()).item()) if self.seed is None
                    else int(np.random.SeedSequence([self.seed, self.epoch, index, 1]).generate_state(1)[0]))
            place = np.random.default_rng(seed)
            top = int(place.integers(0, max(height - tile, 0) + 1))
            left = int(place.integers(0, max(width - tile, 0) + 1))
        image = cut_tiles(sample.image, [(top, left)], tile)[0]
        mask = cut_tiles(sample.mask, [(top, left)], tile)[0]
        b_top, b_left, b_height, b_width = (int(v) for v in sample.box)
        y0, x0 = max(b_top, top), max(b_left, left)
        y1, x1 = min(b_top + b_height, top + tile), min(b_left + b_width, left + tile)
        box = torch.tensor([y0 - top, x0 - left, max(0, y1 - y0), max(0, x1 - x0)], dtype=torch.int64)
        return sample._replace(image=image.contiguous(), mask=mask.contiguous(), box=box)


# ---------------------------------------------------------------------- building from config


@dataclass(frozen=True)
class RecordSplit:
    """Records of every source, before decoding; ``class_names[i]`` is class id ``i``."""

    train: list[Record]
    validation: list[Record]
    test: list[Record]
    class_names: list[str]


@dataclass
class DataBundle:
    """The datasets ``build_datasets`` makes; ``class_names[i]`` is class id ``i``."""

    train: AnomalyDataset | TiledTrainingSet  # tiles when data.tiling is set
    validation: AnomalyDataset  # normal training images held out to calibrate thresholds
    test: AnomalyDataset
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def class_ids(self) -> dict[str, int]:
        return {name: i for i, name in enumerate(self.class_names)}


def hold_out(records: Sequence[Record], fraction: float, seed: int, order: str = "random",
             ) -> tuple[list[Record], list[Record]]:
    """Split normal records into ``(kept, held_out)`` deterministically.

    Records are sorted by image path; ``round(fraction * n)`` of them are held out -- at least
    one when ``fraction > 0`` and ``n >= 2``, and never all of them: the first of a shuffle with
    ``random.Random(seed)`` (order "random"), or the last by path ("newest"). ``fraction == 0``
    holds out nothing. Both lists keep path order.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation_fraction must be in [0, 1), got {fraction}")
    ordered = sorted(records, key=lambda r: str(r.image_path))
    n = len(ordered)
    n_out = round(fraction * n)
    if fraction > 0 and n >= 2:
        n_out = min(max(n_out, 1), n - 1)
    n_out = min(n_out, max(n - 1, 0))
    indices = list(range(n))
    if order == "newest":
        out = set(indices[n - n_out:])
    else:
        random.Random(seed).shuffle(indices)
        out = set(indices[:n_out])
    kept = [r for i, r in enumerate(ordered) if i not in out]
    return kept, [r for i, r in enumerate(ordered) if i in out]


def _source_key(source: SourceConfig) -> tuple:
    return dataclasses.astuple(dataclasses.replace(source, root=str(Path(source.root).resolve())))


def build_records(cfg: DataConfig) -> RecordSplit:
    """Read every source, name its class uniquely, and split off the validation normals.

    Class ids follow the order of ``cfg.sources``. A class is named after its category
    (``mtsd``, ``bottle``, ``01`` ...); when two sources share that name, both become
    ``<layout>/<category>`` (and, if still equal, get ``#2``, ``#3`` ... in source order).
    Validation holds out ``cfg.validation_fraction`` of each class's training normals
    (:func:`hold_out` with ``cfg.split.seed``).
    """
    if not cfg.sources:
        raise DataError("data.sources is empty: list at least one dataset category")
    seen: dict[tuple, int] = {}
    for i, source in enumerate(cfg.sources):
        # a DataConfig built in code skips the config loader's checks: `root=5` would become the folder "5"
        problem = None if isinstance(source.root, os.PathLike) else Text().problem(source.root)
        if problem is not None:
            raise DataError(f"data.sources[{i}].root {problem}, got {shown(source.root)}")
        key = _source_key(source)
        if key in seen:
            raise DataError(
                f"{source.root}: source {i} repeats source {seen[key]} "
                f"(layout {source.layout!r}, category {source.category!r})"
            )
        seen[key] = i

    per_source = [records_for(source, cfg.split) for source in cfg.sources]
    base = [train[0].category for train, _ in per_source]  # readers never return empty train
    counts = Counter(base)
    names = [
        f"{source.layout}/{name}" if counts[name] > 1 else name for source, name in zip(cfg.sources, base, strict=True)
    ]
    totals = Counter(names)
    running: Counter[str] = Counter()
    for i, name in enumerate(names):
        if totals[name] > 1:
            running[name] += 1
            if running[name] > 1:
                names[i] = f"{name}#{running[name]}"

    train: list[Record] = []
    validation: list[Record] = []
    test: list[Record] = []
    for (src_train, src_test), name in zip(per_source, names, strict=True):
        src_train = [dataclasses.replace(r, category=name) for r in src_train]
        src_test = [dataclasses.replace(r, category=name) for r in src_test]
        kept, held = hold_out(src_train, cfg.validation_fraction, cfg.split.seed, cfg.validation_order)
        train.extend(kept)
        validation.extend(held)
        test.extend(src_test)
    return RecordSplit(train=train, validation=validation, test=test, class_names=names)


def build_datasets(cfg: DataConfig) -> DataBundle:
    """Datasets for training (augmented), validation and test, from ``cfg``.

    With ``cfg.skip_bad``, one :class:`SkippedFilesWarning` lists every skipped file of all
    three datasets. Raises DataError if no training image is left.
    """
    split = build_records(cfg)
    class_ids = {name: i for i, name in enumerate(split.class_names)}
    train = dataset_of(split.train, cfg, class_ids, training=True)
    validation = dataset_of(split.validation, cfg, class_ids)
    test = dataset_of(split.test, cfg, class_ids)
    skipped = train.skipped + validation.skipped + test.skipped
    if skipped:
        total = len(split.train) + len(split.validation) + len(split.test)
        warnings.warn(_format_skipped(skipped, total), SkippedFilesWarning, stacklevel=2)
    if len(train) == 0:
        raise DataError("no usable training images left (all were skipped as bad files)")
    return DataBundle(train=training_set(train, cfg), validation=validation, test=test, class_names=split.class_names)


def dataset_of(records: Sequence[Record], cfg: DataConfig, class_ids: dict[str, int], training: bool = False,
               ) -> AnomalyDataset:
    """Records read as `cfg` says: augmented for training, as they are for scoring."""
    return AnomalyDataset(list(records), class_ids, cfg.image_size, cfg.augment if training else None,
                          resize=cfg.resize, cache=cfg.cache, skip_bad=cfg.skip_bad, warn_skipped=False,
                          max_image_pixels=cfg.max_image_pixels)


def training_set(images: AnomalyDataset, cfg: DataConfig) -> AnomalyDataset | TiledTrainingSet:
    """What the model trains on: the images, or their tiles when `cfg.tiling` is set."""
    return TiledTrainingSet(images, cfg.tiling) if isinstance(cfg.tiling, Tiling) else images
