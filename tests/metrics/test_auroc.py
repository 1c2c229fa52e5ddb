import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from defectscope.metrics import image_auroc, pixel_auroc

from .reference import auroc_reference
from .synthetic import SEEDS, TIES, random_case, random_image_case


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_image_auroc_matches_reference(seed: int, ties: str) -> None:
    scores, labels = random_image_case(seed, ties)
    expected = auroc_reference(scores, labels)
    assert image_auroc(scores, labels) == pytest.approx(expected, rel=1e-12)
    assert 0.0 < expected < 1.0


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_pixel_auroc_matches_reference_and_sklearn(seed: int, ties: str) -> None:
    maps, masks = random_case(seed, ties)
    expected = auroc_reference(maps, masks)
    assert pixel_auroc(maps, masks) == pytest.approx(expected, rel=1e-12)
    assert pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()))


def test_hand_computed() -> None:
    # Pairs (pos, neg): 0.35>0.1, 0.35<0.4, 0.8>0.1, 0.8>0.4 -> 3 of 4 pairs won.
    assert image_auroc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == 0.75
    # Ties count one half: positives {2, 1}, negatives {1, 0}: 2>1, 2>0, 1=1 (1/2), 1>0 -> 3.5/4.
    assert image_auroc([2, 1, 1, 0], [1, 1, 0, 0]) == 0.875
    assert image_auroc([1.0, 1.0], [False, True]) == 0.5


def test_perfect_and_inverted() -> None:
    _, masks = random_case(0)
    perfect = masks.astype(float) + 0.1 * np.random.default_rng(0).random(masks.shape)
    assert pixel_auroc(perfect, masks) == 1.0
    assert pixel_auroc(-perfect, masks) == 0.0
    assert image_auroc([0.1, 0.2, 0.9], [0, 0, 1]) == 1.0
    assert image_auroc([0.9, 0.8, 0.1], [0, 0, 1]) == 0.0


def test_one_class_gives_nan() -> None:
    assert math.isnan(image_auroc([0.1, 0.5, 0.3], [0, 0, 0]))
    assert math.isnan(image_auroc([0.1, 0.5, 0.3], [1, 1, 1]))
    maps = np.random.default_rng(0).random((3, 4, 4))
    assert math.isnan(pixel_auroc(maps, np.zeros((3, 4, 4), dtype=bool)))
    assert math.isnan(pixel_auroc(maps, np.ones((3, 4, 4), dtype=bool)))


def test_accepts_int_masks_and_float32_maps() -> None:
    maps, masks = random_case(1, "decimal")
    expected = pixel_auroc(maps, masks)
    assert pixel_auroc(maps.astype(np.float32), masks.astype(np.uint8)) == pytest.approx(expected)


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        image_auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(ValueError, match="NaN"):
        image_auroc([0.1, float("nan")], [0, 1])
    with pytest.raises(ValueError, match="0 and 1"):
        image_auroc([0.1, 0.2], [0, 2])
    with pytest.raises(ValueError, match="empty"):
        image_auroc([], [])
    with pytest.raises(ValueError, match=r"\(N,\)"):
        image_auroc(np.zeros((2, 2)), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="same shape"):
        pixel_auroc(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pixel_auroc(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="0 and 1"):
        pixel_auroc(np.zeros((1, 2, 2)), np.full((1, 2, 2), 0.5))  # e.g. a bilinearly resized mask
