"""Layout readers: a dataset root on disk -> ``(train, test)`` lists of :class:`Record`.

These are pure functions of the directory tree: they list files, pair images with masks and
split them, but never decode pixels. Every problem raises :class:`DataError` naming the path.

Common rules

* Image files: suffixes ``.png .jpg .jpeg .bmp .tif .tiff`` (any case). Other files and hidden
  entries (names starting with ``.``) are ignored.
* Lists are sorted by file name, so the output does not depend on directory order.
* Training records are normal (``label=0``, ``defect_type="good"``, ``mask_path=None``).
  Normal test records have no mask (the dataset gives them an all-zero mask).
* Every defective test image needs a mask, and every mask needs its image: a defective image
  without a mask, or an orphan mask, is an error.

Layouts

* ``mvtec`` (MVTec AD, VisA in MVTec layout): ``<root>/<category>/train/good``,
  ``test/<type>``, ``ground_truth/<type>/<name>_mask.png``.
* ``btad``: the same tree, with BTAD's variations: the normal folder may be named ``ok``
  instead of ``good``; images and masks may be ``.bmp`` or ``.png``; a mask may be named
  ``<name>_mask.<ext>`` or ``<name>.<ext>``. Both readers use the same tolerant mask lookup.
* ``mtsd`` (Magnetic Tile Surface Defects, native layout): ``MT_Free/Imgs`` (normal) and
  ``MT_<Type>/Imgs`` (defective), with each mask ``NAME.png`` beside its image ``NAME.jpg``.
  There is no official split; see :func:`split_normals` for the deterministic one used here.
* ``folder``: a folder of normal images, optional folders of defective images and their masks
  (see :class:`~defectscope.data.config.SourceConfig`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Sequence
from pathlib import Path

from .config import SourceConfig, SplitConfig
from .errors import DataError
from .limits import IMAGE_SUFFIXES
from .sample import Record

__all__ = [
    "IMAGE_SUFFIXES",
    "NORMAL_DIR_NAMES",
    "list_images",
    "split_normals",
    "mvtec_records",
    "btad_records",
    "mtsd_records",
    "folder_records",
    "records_for",
    "count_by_type",
]

NORMAL_DIR_NAMES = ("good", "ok")  # MVTec / VisA use "good", BTAD uses "ok"
MASK_SUFFIX = "_mask"
_MAX_LISTED = 10  # problems listed in one error message

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- helpers


def _is_hidden(path: Path) -> bool:
    return path.name.startswith(".")


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not _is_hidden(path) and path.is_file()


def _require_dir(path: Path, what: str) -> Path:
    if not path.exists():
        raise DataError(f"{path}: {what} not found")
    if not path.is_dir():
        raise DataError(f"{path}: {what} is not a directory")
    return path


def list_images(folder: PathLike) -> list[Path]:
    """Image files directly in ``folder`` (not recursive), sorted by name, hidden ones skipped."""
    folder = Path(folder)
    return sorted((p for p in folder.iterdir() if _is_image(p)), key=_name_key)


def _subdirs(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not _is_hidden(p)), key=lambda p: p.name)


def _raise_listed(header: str, problems: Sequence[str]) -> None:
    if not problems:
        return
    shown = "\n  ".join(problems[:_MAX_LISTED])
    more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
    raise DataError(f"{header} ({len(problems)}):\n  {shown}{more}")


def _good(path: Path, category: str) -> Record:
    return Record(image_path=path, mask_path=None, label=0, category=category, defect_type="good")


def _name_key(path: PathLike) -> tuple[str, str]:
    return Path(path).name, str(path)


def split_normals(paths: Sequence[Path], test_fraction: float, seed: int) -> tuple[list[Path], list[Path]]:
    """Deterministic split of normal images into ``(train, test)``.

    The paths are sorted by file name, shuffled with ``random.Random(seed)``, and the first
    ``round(test_fraction * n)`` (Python's ``round``) go to test, the rest to train. Both lists
    are returned sorted by name. The same names and seed always give the same split, on any
    machine and Python version (``random.Random`` with an int seed is stable).
    """
    if not 0.0 <= test_fraction < 1.0:
        raise DataError(f"split.test_fraction must be in [0, 1), got {test_fraction}")
    shuffled = sorted(paths, key=_name_key)
    random.Random(seed).shuffle(shuffled)
    n_test = round(test_fraction * len(shuffled))
    return sorted(shuffled[n_test:], key=_name_key), sorted(shuffled[:n_test], key=_name_key)


class _MaskIndex:
    """Masks of one ``ground_truth/<type>`` folder, looked up by image name.

    A mask for image ``NAME.<ext>`` is ``NAME_mask.<any image ext>`` or ``NAME.<any image ext>``.
    """

    def __init__(self, folder: Path | None) -> None:
        self.folder = folder
        self.by_stem: dict[str, list[Path]] = {}
        if folder is not None and folder.is_dir():
            for path in list_images(folder):
                self.by_stem.setdefault(path.stem, []).append(path)
        self.used: set[Path] = set()

    def find(self, image: Path) -> Path | None:
        candidates = self.by_stem.get(image.stem + MASK_SUFFIX, []) + self.by_stem.get(image.stem, [])
        if len(candidates) > 1:
            names = ", ".join(str(c) for c in candidates)
            raise DataError(f"{image}: several masks match this image: {names}")
        if not candidates:
            return None
        self.used.add(candidates[0])
        return candidates[0]

    def orphans(self) -> list[Path]:
        return [p for paths in self.by_stem.values() for p in paths if p not in self.used]


# --------------------------------------------------------------------------- MVTec / BTAD


def _mvtec_like(root: PathLike, category: str, layout: str) -> tuple[list[Record], list[Record]]:
    root = Path(root)
    _require_dir(root, f"{layout} dataset root")
    if category:
        cat_root = _require_dir(root / category, f"{layout} category {category!r}")
    else:  # root is the category folder itself
        cat_root, category = root, root.name

    train_root = _require_dir(cat_root / "train", f"{layout} training folder")
    normal_dirs = [train_root / n for n in NORMAL_DIR_NAMES if (train_root / n).is_dir()]
    if not normal_dirs:
        names = " or ".join(f"'{n}'" for n in NORMAL_DIR_NAMES)
        raise DataError(f"{train_root}: no folder of normal training images ({names}) found")
    train_paths = [p for d in normal_dirs for p in list_images(d)]
    if not train_paths:
        raise DataError(f"{normal_dirs[0]}: empty category, no training images found")
    train = [_good(p, category) for p in train_paths]

    test_root = _require_dir(cat_root / "test", f"{layout} test folder")
    gt_root = cat_root / "ground_truth"
    test: list[Record] = []
    missing: list[str] = []
    orphans: list[Path] = []
    types_seen: set[str] = set()
    for type_dir in _subdirs(test_root):
        types_seen.add(type_dir.name)
        images = list_images(type_dir)
        if type_dir.name in NORMAL_DIR_NAMES:
            test.extend(_good(p, category) for p in images)
            continue
        masks = _MaskIndex(gt_root / type_dir.name)
        for image in images:
            mask = masks.find(image)
            if mask is None:
                missing.append(
                    f"{image}: defective test image has no mask "
                    f"(looked for {image.stem}{MASK_SUFFIX}.* or {image.stem}.* "
                    f"in {gt_root / type_dir.name})"
                )
                continue
            test.append(
                Record(
                    image_path=image,
                    mask_path=mask,
                    label=1,
                    category=category,
                    defect_type=type_dir.name,
                )
            )
        orphans.extend(masks.orphans())
    if gt_root.is_dir():  # masks for a defect type with no test folder at all
        for gt_dir in _subdirs(gt_root):
            if gt_dir.name not in types_seen:
                orphans.extend(list_images(gt_dir))
    _raise_listed(f"{cat_root}: defective test images without a mask", missing)
    _raise_listed(
        f"{cat_root}: masks without a matching test image (orphan masks)",
        [f"{p}: mask has no image in {test_root / p.parent.name}" for p in orphans],
    )
    return train, test


def mvtec_records(root: PathLike, category: str) -> tuple[list[Record], list[Record]]:
    """MVTec AD layout (also VisA converted to it): ``<root>/<category>/{train,test,ground_truth}``.

    ``category=""`` means ``root`` is the category folder itself.
    """
    return _mvtec_like(root, category, "mvtec")


def btad_records(root: PathLike, category: str) -> tuple[list[Record], list[Record]]:
    """BTAD (products ``01``, ``02``, ``03``): MVTec layout with ``ok``/``ko`` folders,
    ``.bmp``/``.png`` files and masks named ``NAME.<ext>`` or ``NAME_mask.<ext>``."""
    return _mvtec_like(root, category, "btad")


# --------------------------------------------------------------------------- MTSD

MTSD_NORMAL = "MT_Free"
MTSD_CATEGORY = "mtsd"


def _mtsd_images_dir(class_dir: Path) -> Path:
    imgs = class_dir / "Imgs"
    return imgs if imgs.is_dir() else class_dir


def _mtsd_pairs(folder: Path) -> tuple[list[tuple[Path, Path | None]], list[Path]]:
    """Pair images with the ``.png`` masks beside them in one MTSD folder.

    Files sharing a stem form a group: the non-PNG file is the image, ``NAME.png`` its mask.
    A lone ``.png`` is a mask whose image is missing (returned as an orphan).
    """
    groups: dict[str, list[Path]] = {}
    for path in list_images(folder):
        groups.setdefault(path.stem, []).append(path)
    pairs: list[tuple[Path, Path | None]] = []
    orphans: list[Path] = []
    for stem in sorted(groups):
        files = groups[stem]
        masks = [p for p in files if p.suffix.lower() == ".png"]
        images = [p for p in files if p.suffix.lower() != ".png"]
        if len(images) > 1:
            names = ", ".join(str(p) for p in images)
            raise DataError(f"{folder}: several images share the name {stem!r}: {names}")
        if not images:
            orphans.extend(masks)
            continue
        pairs.append((images[0], masks[0] if masks else None))
    return pairs, orphans


def mtsd_records(root: PathLike, split: SplitConfig | None = None) -> tuple[list[Record], list[Record]]:
    """MTSD native layout (Huang, Qiu, Yuan, The Visual Computer 36, 2020).

    ``MT_Free/Imgs`` holds the normal tiles; every other ``MT_<Type>/Imgs`` folder holds
    defective tiles of type ``<type>`` (lower-cased, e.g. ``blowhole``). Each image ``NAME.jpg``
    has its mask ``NAME.png`` beside it; ``Imgs`` may be omitted (files directly in ``MT_*``).

    Split (MTSD has no official one): the MT_Free images are split by :func:`split_normals`
    with ``split.test_fraction`` and ``split.seed`` -- sorted by name, shuffled with
    ``random.Random(seed)``, the first ``round(test_fraction * n)`` go to test (label 0, no
    mask: MT_Free masks are all zero), the rest to train. All defective images go to test.
    """
    split = split or SplitConfig()
    root = Path(root)
    _require_dir(root, "mtsd dataset root")
    free_dir = _require_dir(root / MTSD_NORMAL, "mtsd normal-image folder")
    free_pairs, free_orphans = _mtsd_pairs(_mtsd_images_dir(free_dir))
    if not free_pairs:
        raise DataError(f"{_mtsd_images_dir(free_dir)}: empty category, no normal images found")
    train_paths, test_good_paths = split_normals([image for image, _ in free_pairs], split.test_fraction, split.seed)
    if not train_paths:
        raise DataError(
            f"{free_dir}: no training images left after holding out "
            f"test_fraction={split.test_fraction} of {len(free_pairs)}"
        )
    train = [_good(p, MTSD_CATEGORY) for p in train_paths]
    test = [_good(p, MTSD_CATEGORY) for p in test_good_paths]

    missing: list[str] = []
    orphans = list(free_orphans)
    for class_dir in _subdirs(root):
        if not class_dir.name.startswith("MT_") or class_dir.name == MTSD_NORMAL:
            continue
        defect_type = class_dir.name[3:].lower()
        pairs, lone_masks = _mtsd_pairs(_mtsd_images_dir(class_dir))
        orphans.extend(lone_masks)
        for image, mask in pairs:
            if mask is None:
                missing.append(f"{image}: defective image has no mask {image.with_suffix('.png')}")
                continue
            test.append(
                Record(
                    image_path=image,
                    mask_path=mask,
                    label=1,
                    category=MTSD_CATEGORY,
                    defect_type=defect_type,
                )
            )
    _raise_listed(f"{root}: defective images without a mask", missing)
    _raise_listed(
        f"{root}: masks without their image (orphan masks)",
        [f"{p}: no image named {p.stem}.* beside this mask" for p in orphans],
    )
    return train, test


# --------------------------------------------------------------------------- folder


def folder_records(
    root: PathLike, cfg: SourceConfig, split: SplitConfig | None = None
) -> tuple[list[Record], list[Record]]:
    """A folder of normal images, optionally with defective images and their masks.

    * ``cfg.good_dir``: normal images. If ``cfg.test_good_dir`` is set, all of them train and
      that folder's images are the normal test images; otherwise they are split like MTSD
      (:func:`split_normals`).
    * ``cfg.defect_dir``: defective images (all go to test, ``defect_type`` = folder name);
      they need ``cfg.mask_dir``, where the mask of ``NAME.<ext>`` is ``NAME.<any image ext>``
      or ``NAME_mask.<any image ext>``.

    Folder names are relative to ``root`` unless absolute. The category is ``cfg.category``,
    or the name of ``root`` when that is empty.
    """
    split = split or SplitConfig()
    root = Path(root)
    _require_dir(root, "folder dataset root")
    category = cfg.category or root.resolve().name
    good_dir = _require_dir(root / cfg.good_dir, "folder of normal images")
    good = list_images(good_dir)
    if not good:
        raise DataError(f"{good_dir}: empty category, no normal images found")
    if cfg.test_good_dir:
        test_good_dir = _require_dir(root / cfg.test_good_dir, "folder of normal test images")
        train_paths, test_good_paths = good, list_images(test_good_dir)
    else:
        train_paths, test_good_paths = split_normals(good, split.test_fraction, split.seed)
        if not train_paths:
            raise DataError(
                f"{good_dir}: no training images left after holding out "
                f"test_fraction={split.test_fraction} of {len(good)}"
            )
    train = [_good(p, category) for p in train_paths]
    test = [_good(p, category) for p in test_good_paths]

    if cfg.defect_dir:
        defect_dir = _require_dir(root / cfg.defect_dir, "folder of defective images")
        if not cfg.mask_dir:
            raise DataError(f"{defect_dir}: defective images need masks, but mask_dir is not set")
        mask_dir = _require_dir(root / cfg.mask_dir, "mask folder")
        masks = _MaskIndex(mask_dir)
        missing: list[str] = []
        for image in list_images(defect_dir):
            mask = masks.find(image)
            if mask is None:
                missing.append(f"{image}: defective image has no mask in {mask_dir}")
                continue
            test.append(
                Record(
                    image_path=image,
                    mask_path=mask,
                    label=1,
                    category=category,
                    defect_type=defect_dir.name,
                )
            )
        _raise_listed(f"{root}: defective images without a mask", missing)
        _raise_listed(
            f"{root}: masks without their image (orphan masks)",
            [f"{p}: no image named {p.stem}.* in {defect_dir}" for p in masks.orphans()],
        )
    elif cfg.mask_dir:
        raise DataError(f"{root / cfg.mask_dir}: mask_dir is set but defect_dir is not")
    return train, test


# --------------------------------------------------------------------------- dispatch


def records_for(source: SourceConfig, split: SplitConfig | None = None) -> tuple[list[Record], list[Record]]:
    """``(train, test)`` records of one source, whatever its layout."""
    split = split or SplitConfig()
    if source.layout == "mvtec":
        return mvtec_records(source.root, source.category)
    if source.layout == "btad":
        return btad_records(source.root, source.category)
    if source.layout == "mtsd":
        return mtsd_records(source.root, split)
    if source.layout == "folder":
        return folder_records(source.root, source, split)
    raise DataError(f"{source.root}: unknown layout {source.layout!r} (expected mvtec, btad, mtsd or folder)")


def count_by_type(records: Iterable[Record]) -> dict[str, int]:
    """``{defect_type: count}``, handy for summaries and checks."""
    counts: dict[str, int] = {}
    for record in records:
        counts[record.defect_type] = counts.get(record.defect_type, 0) + 1
    return counts
