import math

import numpy as np
import pytest
from sklearn.metrics import precision_recall_curve

from defectscope.metrics import f1_max

from .reference import f1_max_reference
from .synthetic import SEEDS, TIES, random_case, random_image_case


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_image_f1_max_matches_reference(seed: int, ties: str) -> None:
    scores, labels = random_image_case(seed, ties)
    assert f1_max(scores, labels) == pytest.approx(f1_max_reference(scores, labels), rel=1e-12)


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_pixel_f1_max_matches_reference_and_sklearn(seed: int, ties: str) -> None:
    maps, masks = random_case(seed, ties)
    value = f1_max(maps, masks)  # maps and masks flattened together
    assert value == pytest.approx(f1_max_reference(maps, masks), rel=1e-12)
    precision, recall, _ = precision_recall_curve(masks.ravel(), maps.ravel())
    with np.errstate(invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    assert value == pytest.approx(np.nanmax(f1), rel=1e-12)


def test_hand_computed() -> None:
    # scores 0.8, 0.4, 0.35, 0.1 with labels 1, 0, 1, 0 (2 positives):
    #   t=0.8 : tp=1 fp=0 -> P=1,   R=1/2 -> F1=2/3
    #   t=0.4 : tp=1 fp=1 -> P=1/2, R=1/2 -> F1=1/2
    #   t=0.35: tp=2 fp=1 -> P=2/3, R=1   -> F1=4/5   <- max
    #   t=0.1 : tp=2 fp=2 -> P=1/2, R=1   -> F1=2/3
    assert f1_max([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]) == pytest.approx(0.8, abs=1e-15)
    # All scores tied: the only threshold flags everything: 2TP/(2TP+FP) = 4/(4+3).
    assert f1_max([0.5] * 5, [1, 1, 0, 0, 0]) == pytest.approx(4 / 7, abs=1e-15)


def test_edge_cases() -> None:
    assert math.isnan(f1_max([0.1, 0.5, 0.3], [0, 0, 0]))
    assert f1_max([0.1, 0.5, 0.3], [1, 1, 1]) == 1.0
    assert f1_max([0.1, 0.2, 0.9, 0.8], [0, 0, 1, 1]) == 1.0
    _, masks = random_case(2)
    assert f1_max(masks.astype(float), masks) == 1.0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same shape"):
        f1_max(np.zeros((2, 4, 4)), np.zeros((2, 4, 5), dtype=bool))
    with pytest.raises(ValueError, match="NaN"):
        f1_max([0.1, float("nan")], [0, 1])
