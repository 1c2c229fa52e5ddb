"""Small random test sets: masks with blobs and speckle, maps that partly follow the masks."""

from __future__ import annotations

import numpy as np

SEEDS = [0, 1, 2, 3, 4]
# How scores are quantised: continuous (no ties), 1 decimal (many ties), integers (heavy ties).
TIES = ["none", "decimal", "integer"]


def quantise(x: np.ndarray, ties: str) -> np.ndarray:
    if ties == "none":
        return x
    if ties == "decimal":
        return np.round(x, 1)
    if ties == "integer":
        return np.round(x)
    raise ValueError(ties)


def random_masks(rng: np.random.Generator, n: int = 6, h: int = 12, w: int = 12) -> np.ndarray:
    """Image 0 is always defect-free and image 1 always has a defect; the rest are random.

    Rectangles give larger regions (several per image), speckle gives single pixels that often
    touch each other or a rectangle only diagonally.
    """
    masks = np.zeros((n, h, w), dtype=bool)
    for i in range(1, n):
        if i > 1 and rng.random() < 0.3:
            continue  # a good image
        for _ in range(rng.integers(1, 4)):
            y, x = rng.integers(0, h), rng.integers(0, w)
            dy, dx = rng.integers(1, 5, size=2)
            masks[i, y : y + dy, x : x + dx] = True
        masks[i] |= rng.random((h, w)) < 0.04
    return masks


def random_maps(rng: np.random.Generator, masks: np.ndarray, ties: str = "none") -> np.ndarray:
    """Noise plus a signal on the defects, so the metrics land between trivial values."""
    return quantise(rng.normal(size=masks.shape) + 1.5 * masks, ties)


def random_case(seed: int, ties: str = "none") -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    masks = random_masks(rng)
    return random_maps(rng, masks, ties), masks


def random_image_case(seed: int, ties: str = "none", n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Per-image scores (n,) and labels (n,) with both classes present."""
    rng = np.random.default_rng(seed)
    labels = rng.random(n) < 0.4
    labels[:2] = [False, True]
    return quantise(rng.normal(size=n) + 1.0 * labels, ties), labels
