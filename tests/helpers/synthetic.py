"""Tiny synthetic datasets on disk, in every layout the data package reads.

Each ``make_*_tree`` function writes a deterministic tree (same arguments -> same bytes) under
``root`` and returns the dataset root to pass to a reader / ``SourceConfig``. Images are small
(32 px by default): a smooth textured background shared by every image of a category, plus a
little noise; defective images get a bright or dark blob exactly where their mask is 1, so a
model can in principle learn the task.

Usage from any test (``tests/`` is on ``sys.path`` through the root ``conftest.py``)::

    from helpers.synthetic import make_mvtec_tree, mvtec_config

    root = make_mvtec_tree(tmp_path / "mvtec", categories=("widget",), n_train=4)
    cfg = mvtec_config(root, ("widget",), image_size=32)

Session fixtures with the default trees (``mvtec_root``, ``btad_root``, ``mtsd_root``,
``folder_root``) live in ``tests/conftest.py``; they are shared, so do not modify them --
build a private tree with these functions under ``tmp_path`` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from defectscope.data import AugmentConfig, DataConfig, SourceConfig, SplitConfig

# Defaults of the session trees, so tests can assert on counts.
MVTEC_CATEGORIES = ("widget", "gadget")
MVTEC_DEFECT_TYPES = ("scratch", "spot")
MVTEC_N_TRAIN = 6
MVTEC_N_TEST_GOOD = 2
MVTEC_N_DEFECT = 2  # per defect type

BTAD_PRODUCTS = ("01", "02", "03")
BTAD_N_TRAIN = 4
BTAD_N_TEST_GOOD = 2
BTAD_N_DEFECT = 3


@dataclass(frozen=True)
class BtadVariant:
    """How one BTAD product names its files (the real products differ in this way)."""

    image_ext: str
    mask_ext: str
    mask_suffix: str  # "" (NAME.ext) or "_mask" (NAME_mask.ext)


BTAD_VARIANTS = {
    "01": BtadVariant(image_ext=".bmp", mask_ext=".png", mask_suffix=""),
    "02": BtadVariant(image_ext=".png", mask_ext=".png", mask_suffix="_mask"),
    "03": BtadVariant(image_ext=".bmp", mask_ext=".bmp", mask_suffix=""),
}

MTSD_N_FREE = 10
MTSD_DEFECT_COUNTS = {"Blowhole": 2, "Crack": 2, "Uneven": 1}

FOLDER_N_GOOD = 8
FOLDER_N_DEFECT = 3


# --------------------------------------------------------------------------- pixels


def _size(size: int | tuple[int, int]) -> tuple[int, int]:
    """(width, height)."""
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _background(width: int, height: int, key: int, rng: np.random.Generator) -> np.ndarray:
    """float (H, W) in [0, 1]: a texture fixed by ``key`` plus per-image noise."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phase = (key % 7) * 0.5
    texture = 0.5 + 0.15 * np.sin(x * 0.6 + phase) * np.cos(y * 0.45 - phase) + 0.1 * (x / max(width - 1, 1) - 0.5)
    return np.clip(texture + rng.normal(0.0, 0.02, size=texture.shape), 0.0, 1.0)


def _defect_region(width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """bool (H, W): an axis-aligned ellipse covering roughly 5-15 % of the image."""
    ry = max(2, int(rng.integers(height // 8, height // 4 + 1)))
    rx = max(2, int(rng.integers(width // 8, width // 4 + 1)))
    cy = int(rng.integers(ry, height - ry))
    cx = int(rng.integers(rx, width - rx))
    y, x = np.mgrid[0:height, 0:width]
    return ((y - cy) / ry) ** 2 + ((x - cx) / rx) ** 2 <= 1.0


def _to_uint8(arr: np.ndarray) -> np.ndarray:
    return np.clip(np.round(arr * 255.0), 0, 255).astype(np.uint8)


def synthetic_pair(
    size: int | tuple[int, int],
    key: int,
    seed: int,
    defective: bool,
    colour: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """uint8 image ((H, W, 3) or (H, W)) and bool mask (H, W), deterministic in its arguments."""
    width, height = _size(size)
    rng = np.random.default_rng([seed, key, int(defective)])
    grey = _background(width, height, key, rng)
    mask = _defect_region(width, height, rng) if defective else np.zeros((height, width), bool)
    if defective:
        grey = np.where(mask, 0.95 if rng.random() < 0.5 else 0.05, grey)
    if not colour:
        return _to_uint8(grey), mask
    tint = np.array([1.0, 0.9 + 0.02 * (key % 5), 0.8])
    return _to_uint8(grey[..., None] * tint), mask


def _save(arr: np.ndarray, path: Path, **params) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, **params)
    return path


def _save_mask(mask: np.ndarray, path: Path) -> Path:
    return _save(np.where(mask, 255, 0).astype(np.uint8), path)


# --------------------------------------------------------------------------- MVTec / BTAD


def make_mvtec_tree(
    root: str | Path,
    categories: Sequence[str] = MVTEC_CATEGORIES,
    size: int | tuple[int, int] = 32,
    n_train: int = MVTEC_N_TRAIN,
    n_test_good: int = MVTEC_N_TEST_GOOD,
    defect_types: Sequence[str] = MVTEC_DEFECT_TYPES,
    n_defect: int = MVTEC_N_DEFECT,
    image_ext: str = ".png",
    mask_ext: str = ".png",
    mask_suffix: str = "_mask",
    normal_dir: str = "good",
    colour: bool = True,
    seed: int = 0,
) -> Path:
    """MVTec AD layout: ``<root>/<cat>/train/<normal_dir>``, ``test/<normal_dir>``,
    ``test/<type>``, ``ground_truth/<type>/NNN<mask_suffix><mask_ext>``. Returns ``root``.

    Images are named ``000<image_ext>``, ``001<image_ext>`` ... per folder, like MVTec.
    """
    root = Path(root)
    for c, category in enumerate(categories):
        cat = root / category
        key = 100 * (c + 1)
        for folder in ("train", "test"):  # exist even when empty
            (cat / folder / normal_dir).mkdir(parents=True, exist_ok=True)
        for i in range(n_train):
            image, _ = synthetic_pair(size, key, seed * 1000 + i, False, colour)
            _save(image, cat / "train" / normal_dir / f"{i:03d}{image_ext}")
        for i in range(n_test_good):
            image, _ = synthetic_pair(size, key, seed * 1000 + 500 + i, False, colour)
            _save(image, cat / "test" / normal_dir / f"{i:03d}{image_ext}")
        for t, defect_type in enumerate(defect_types):
            for i in range(n_defect):
                image, mask = synthetic_pair(size, key, seed * 1000 + 700 + 50 * t + i, True, colour)
                _save(image, cat / "test" / defect_type / f"{i:03d}{image_ext}")
                _save_mask(mask, cat / "ground_truth" / defect_type / f"{i:03d}{mask_suffix}{mask_ext}")
    return root


def make_btad_tree(
    root: str | Path,
    products: Sequence[str] = BTAD_PRODUCTS,
    size: int | tuple[int, int] = 32,
    n_train: int = BTAD_N_TRAIN,
    n_test_good: int = BTAD_N_TEST_GOOD,
    n_defect: int = BTAD_N_DEFECT,
    seed: int = 0,
) -> Path:
    """BTAD layout: ``<root>/<product>/train/ok``, ``test/ok``, ``test/ko``,
    ``ground_truth/ko``, with per-product file naming from :data:`BTAD_VARIANTS`
    (``.bmp`` or ``.png`` images; masks ``NAME.png``, ``NAME_mask.png`` or ``NAME.bmp``)."""
    root = Path(root)
    for p, product in enumerate(products):
        variant = BTAD_VARIANTS.get(product, BTAD_VARIANTS["01"])
        make_mvtec_tree(
            root,
            categories=(product,),
            size=size,
            n_train=n_train,
            n_test_good=n_test_good,
            defect_types=("ko",),
            n_defect=n_defect,
            image_ext=variant.image_ext,
            mask_ext=variant.mask_ext,
            mask_suffix=variant.mask_suffix,
            normal_dir="ok",
            seed=seed + 17 * (p + 1),
        )
    return root


# --------------------------------------------------------------------------- MTSD


def soften_mask(mask: np.ndarray) -> np.ndarray:
    """uint8 MTSD-like soft mask: 255 inside, anti-aliased values on a 1-px rim on both sides.

    Inner rim pixels (inside the defect) get 200 or 128 (>= 128: defect); outer rim pixels
    (outside) get 100 or 20 (< 128: background). So thresholding at 128 recovers ``mask``.
    """
    out = np.where(mask, 255, 0).astype(np.uint8)
    padded = np.pad(mask, 1, mode="edge")
    neighbours = [
        padded[1 + dy : 1 + dy + mask.shape[0], 1 + dx : 1 + dx + mask.shape[1]]
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
    ]
    touches_out = np.logical_or.reduce([~n for n in neighbours])
    touches_in = np.logical_or.reduce(neighbours)
    checker = (np.indices(mask.shape).sum(axis=0) % 2).astype(bool)
    inner = mask & touches_out
    outer = ~mask & touches_in
    out[inner] = np.where(checker[inner], 200, 128)
    out[outer] = np.where(checker[outer], 100, 20)
    return out


def make_mtsd_tree(
    root: str | Path,
    n_free: int = MTSD_N_FREE,
    defect_counts: Mapping[str, int] = MTSD_DEFECT_COUNTS,
    sizes: Sequence[tuple[int, int]] = ((40, 28), (28, 36), (33, 45), (48, 30)),
    seed: int = 0,
) -> Path:
    """MTSD native layout: ``MT_Free/Imgs`` and ``MT_<Type>/Imgs`` with grey JPEG images
    ``exp<k>_num_<n>.jpg`` and soft-valued PNG masks ``exp<k>_num_<n>.png`` beside them
    (all zero for MT_Free). Image sizes cycle through ``sizes`` (non-square (w, h))."""
    root = Path(root)
    classes = [("Free", n_free)] + list(defect_counts.items())
    counter = 0
    for c, (name, count) in enumerate(classes):
        folder = root / f"MT_{name}" / "Imgs"
        folder.mkdir(parents=True, exist_ok=True)  # exists even when empty
        for i in range(count):
            size = sizes[counter % len(sizes)]
            image, mask = synthetic_pair(size, 7, seed * 1000 + 100 * c + i, name != "Free", False)
            stem = f"exp{i % 3}_num_{1000 * (c + 1) + 37 * i}"
            _save(image, folder / f"{stem}.jpg", quality=90)
            _save(soften_mask(mask), folder / f"{stem}.png")
            counter += 1
    return root


# --------------------------------------------------------------------------- folder


def make_folder_tree(
    root: str | Path,
    n_good: int = FOLDER_N_GOOD,
    n_defect: int = FOLDER_N_DEFECT,
    size: int | tuple[int, int] = 32,
    image_ext: str = ".png",
    mask_suffix: str = "_mask",
    seed: int = 0,
) -> Path:
    """Folder layout: ``<root>/good``, ``<root>/defect``, ``<root>/mask`` (mask of
    ``defect/dNN.png`` is ``mask/dNN<mask_suffix>.png``). Use
    ``SourceConfig("folder", root, category=..., defect_dir="defect", mask_dir="mask")``."""
    root = Path(root)
    for i in range(n_good):
        image, _ = synthetic_pair(size, 3, seed * 1000 + i, False)
        _save(image, root / "good" / f"g{i:02d}{image_ext}")
    for i in range(n_defect):
        image, mask = synthetic_pair(size, 3, seed * 1000 + 500 + i, True)
        _save(image, root / "defect" / f"d{i:02d}{image_ext}")
        _save_mask(mask, root / "mask" / f"d{i:02d}{mask_suffix}.png")
    return root


# --------------------------------------------------------------------------- configs


def mvtec_config(
    root: str | Path,
    categories: Sequence[str] = MVTEC_CATEGORIES,
    image_size: int = 32,
    **overrides,
) -> DataConfig:
    """A small DataConfig over MVTec-layout categories (no augmentation, cached, batch 4)."""
    base = dict(
        sources=tuple(SourceConfig("mvtec", str(root), c) for c in categories),
        image_size=image_size,
        batch_size=4,
        eval_batch_size=4,
        num_workers=0,
        validation_fraction=0.2,
        split=SplitConfig(test_fraction=0.2, seed=0),
        augment=AugmentConfig(hflip=False),
        cache=True,
    )
    base.update(overrides)
    return DataConfig(**base)
