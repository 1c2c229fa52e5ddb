import math

import numpy as np
import pytest

from defectscope.metrics import aupro
from defectscope.metrics._core import rank_descending
from defectscope.metrics.aupro import _pro_curve_ranked

from .reference import aupro_reference, connected_regions, pro_curve_reference
from .synthetic import SEEDS, TIES, random_case

FPR_LIMITS = [0.3, 0.05, 1.0]


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_reference(seed: int, ties: str) -> None:
    maps, masks = random_case(seed, ties)
    assert not masks[0].any() and masks[1].any()  # a good image and a defective one
    reference_curve = np.array(pro_curve_reference(maps, masks))

    fpr, pro = _pro_curve_ranked(masks, rank_descending(maps))
    np.testing.assert_array_equal(fpr, reference_curve[:, 0])
    np.testing.assert_allclose(pro, reference_curve[:, 1], rtol=0, atol=1e-12)

    for limit in FPR_LIMITS:
        expected = aupro_reference(maps, masks, limit)
        assert aupro(maps, masks, limit) == pytest.approx(expected, rel=1e-10, abs=1e-12)
        assert 0.0 < expected < 1.0


def _strip_case(a1: float) -> tuple[np.ndarray, np.ndarray]:
    """Two 1x4 images. Regions: {a0, a1} (size 2) and {b3} (size 1), so 2 regions; 5 normal
    pixels. A pixel of the first region adds 1/(2*2) = 0.25 to PRO, b3 adds 1/(1*2) = 0.5, and
    each normal pixel adds 1/5 = 0.2 to the FPR."""
    maps = np.array([[[0.9, a1, 0.7, 0.1]], [[0.2, 0.3, 0.4, 0.8]]])
    masks = np.array([[[1, 1, 0, 0]], [[0, 0, 0, 1]]])
    return maps, masks


def test_hand_computed_without_ties() -> None:
    # a1 = 0.5. Descending: 0.9 a0 -> (0, .25); 0.8 b3 -> (0, .75); 0.7 a2 -> (.2, .75);
    # 0.5 a1 -> (.2, 1); then normal pixels only -> (.4, 1) ... (1, 1).
    maps, masks = _strip_case(a1=0.5)
    # limit .3: [0, .2] at .75 = .15, plus [.2, .3] at 1 = .1 -> .25 / .3 = 5/6
    assert aupro(maps, masks) == pytest.approx(5 / 6, abs=1e-15)
    # limit .1: [0, .1] at .75 -> .075 / .1 = .75
    assert aupro(maps, masks, fpr_limit=0.1) == pytest.approx(0.75, abs=1e-15)
    # limit 1: .15 + .8 * 1 = .95
    assert aupro(maps, masks, fpr_limit=1.0) == pytest.approx(0.95, abs=1e-15)


def test_hand_computed_with_tie_between_normal_and_defect() -> None:
    # a1 = 0.7 ties with the normal pixel a2, so they form a single point: (0, .75) -> (.2, 1)
    # is one diagonal segment (keeping either pixel's intermediate point would change the area).
    maps, masks = _strip_case(a1=0.7)
    # limit .3: (.75 + 1) / 2 * .2 = .175, plus [.2, .3] at 1 = .1 -> .275 / .3 = 11/12
    assert aupro(maps, masks) == pytest.approx(11 / 12, abs=1e-15)
    # limit .1: PRO interpolated at .1 is .875 -> (.75 + .875) / 2 * .1 = .08125 -> .8125
    assert aupro(maps, masks, fpr_limit=0.1) == pytest.approx(0.8125, abs=1e-15)


def test_good_images_count_for_fpr() -> None:
    # Add a good 1x4 image whose first pixel outscores everything: 9 normal pixels now.
    # Descending: .95 c0 -> (1/9, 0); .9 a0 -> (1/9, .25); .8 b3 -> (1/9, .75);
    # .7 a2 -> (2/9, .75); .5 a1 -> (2/9, 1); then only normal pixels.
    # Area to .3: 0 on [0, 1/9], .75/9 = 1/12 on [1/9, 2/9], .3 - 2/9 = 7/90 on [2/9, .3].
    # (1/12 + 7/90) / .3 = (29/180) / (3/10) = 29/54.
    maps, masks = _strip_case(a1=0.5)
    maps = np.concatenate([maps, [[[0.95, 0.0, 0.0, 0.0]]]])
    masks = np.concatenate([masks, np.zeros((1, 1, 4), dtype=int)])
    assert aupro(maps, masks) == pytest.approx(29 / 54, abs=1e-15)
    assert aupro(maps, masks) == pytest.approx(aupro_reference(maps, masks), abs=1e-15)


def test_diagonal_neighbours_form_one_region() -> None:
    # Image 0 (3x3): defects at (0, 0) and (1, 1), touching only diagonally; scores 1 and 0.
    # Image 1 (3x3): one defect pixel at (1, 1) with score .9. Every other pixel scores 0.
    maps = np.zeros((2, 3, 3))
    masks = np.zeros((2, 3, 3), dtype=bool)
    masks[0, 0, 0] = masks[0, 1, 1] = masks[1, 1, 1] = True
    maps[0, 0, 0], maps[1, 1, 1] = 1.0, 0.9
    # 8-connectivity: 2 regions of sizes 2 and 1. Curve: (0, 0), (0, 1/4), (0, 3/4), (1, 1).
    # PRO at FPR .3 is .75 + .25 * .3 = .825 -> (.75 + .825) / 2 = .7875.
    assert aupro(maps, masks) == pytest.approx(0.7875, abs=1e-15)
    assert aupro_reference(maps, masks) == pytest.approx(0.7875, abs=1e-15)
    # With 4-connectivity it would be 3 regions of size 1: (0, 1/3), (0, 2/3), (1, 1), which gives
    # (2/3 + 2/3 + .1) / 2 = 43/60: so the region count matters and 8-connectivity is in use.
    assert len(connected_regions(masks[0], connectivity=4)) == 2
    assert aupro_reference(maps, masks, connectivity=4) == pytest.approx(43 / 60, abs=1e-15)


def test_regions_weigh_the_same_whatever_their_size() -> None:
    # One 4x8 image: a 2x2 region found perfectly, a 1-pixel region not found at all.
    # PRO jumps to (1 + 0) / 2 = .5 at FPR 0, then straight to (1, 1): (.5 + .65) / 2 = .575.
    # (Weighting by pixels instead would start at 4/5.)
    maps = np.zeros((1, 4, 8))
    masks = np.zeros((1, 4, 8), dtype=bool)
    masks[0, :2, :2] = True
    maps[0, :2, :2] = 1.0
    masks[0, 3, 6] = True
    assert aupro(maps, masks) == pytest.approx(0.575, abs=1e-15)


@pytest.mark.parametrize("limit", FPR_LIMITS)
def test_perfect_and_inverted_maps(limit: float) -> None:
    _, masks = random_case(3)
    noise = np.random.default_rng(3).random(masks.shape)
    perfect = masks + 0.5 * noise  # every defect pixel above every normal pixel
    assert aupro(perfect, masks, limit) == pytest.approx(1.0, abs=1e-12)
    assert aupro(-perfect, masks, limit) == 0.0


def test_undefined_gives_nan() -> None:
    maps = np.random.default_rng(0).random((3, 5, 5))
    assert math.isnan(aupro(maps, np.zeros((3, 5, 5), dtype=bool)))  # no defect region
    assert math.isnan(aupro(maps, np.ones((3, 5, 5), dtype=bool)))  # no normal pixel


def test_accepts_int_masks_and_float32_maps() -> None:
    maps, masks = random_case(4, "decimal")
    expected = aupro(maps, masks)
    # float32 keeps the order and the ties of these 1-decimal values
    assert aupro(maps.astype(np.float32), masks.astype(np.uint8)) == pytest.approx(expected)


def test_rejects_bad_input() -> None:
    maps, masks = random_case(0)
    with pytest.raises(ValueError, match="same shape"):
        aupro(maps, masks[:, :-1])
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        aupro(maps[0], masks[0])
    bad = maps.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        aupro(bad, masks)
    for limit in (0.0, -0.1, 1.5, float("nan")):
        with pytest.raises(ValueError, match="fpr_limit"):
            aupro(maps, masks, limit)
