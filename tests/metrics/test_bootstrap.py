"""Bootstrap intervals of image and pixel AUROC against a brute-force bootstrap; binning's error bound."""

import math

import numpy as np
import pytest

from defectscope.metrics import (
    binned_pixel_auroc,
    image_auroc,
    image_auroc_interval,
    pixel_auroc,
    pixel_auroc_interval,
)
from defectscope.metrics.bootstrap import _pixel_bootstrap, _resample_counts

from .reference import auroc_reference, stratified_bootstrap_reference
from .synthetic import TIES, random_case, random_image_case


def image_metric(items):
    scores, labels = zip(*items, strict=True)
    return auroc_reference(scores, labels)


def pixel_metric(items):
    maps, masks = zip(*items, strict=True)
    return auroc_reference(np.stack(maps), np.stack(masks))


def tiny_pixel_case(seed, ties="none"):
    """8 images of 5×5: a few normal, the rest with small defects that the maps partly follow."""
    maps, masks = random_case(seed, ties)
    return maps[:, :5, :5], masks[:, :5, :5]


@pytest.mark.parametrize("ties", TIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_interval_equals_a_brute_force_bootstrap(seed, ties):
    scores, labels = random_image_case(seed, ties, n=25)
    got = image_auroc_interval(scores, labels, resamples=300, seed=seed)
    want = stratified_bootstrap_reference(list(zip(scores, labels, strict=True)), labels, image_metric, 300, seed)
    assert got == pytest.approx(want, abs=1e-12)
    assert got[0] <= image_auroc(scores, labels) <= got[1] and got[0] < got[1]


@pytest.mark.parametrize("ties", TIES)
def test_pixel_interval_equals_a_brute_force_bootstrap_when_bins_cover_every_score(ties):
    maps, masks = tiny_pixel_case(0, ties)
    assert len(np.unique(maps)) <= 1024  # one bin per distinct score: exact
    defective = masks.reshape(len(masks), -1).any(axis=1)
    assert 0 < defective.sum() < len(masks)
    got = pixel_auroc_interval(maps, masks, resamples=200, seed=3)
    want = stratified_bootstrap_reference(list(zip(maps, masks, strict=True)), defective, pixel_metric, 200, 3)
    assert got == pytest.approx(want, abs=1e-12)


def test_pixel_interval_with_coarse_bins_is_within_the_binning_bound_of_the_brute_force():
    maps, masks = tiny_pixel_case(1)
    defective = masks.reshape(len(masks), -1).any(axis=1)
    want = stratified_bootstrap_reference(list(zip(maps, masks, strict=True)), defective, pixel_metric, 200, 5)
    got = pixel_auroc_interval(maps, masks, resamples=200, seed=5, bins=8)
    _, bounds = _pixel_bootstrap(maps, masks, 200, 0.95, 5, 8)
    # a percentile moves no further than the largest shift of any resampled value
    assert abs(got[0] - want[0]) <= bounds.max() + 1e-12 and abs(got[1] - want[1]) <= bounds.max() + 1e-12
    assert 0 < bounds.max() < 0.2  # 8 bins of 200 pixels: the bound is real, and not vacuous
    assert got != pytest.approx(want, abs=1e-9)  # binning did change something: the bound is what holds


@pytest.mark.parametrize("bins", [16, 64, 1024])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_binned_pixel_auroc_is_within_its_bound_of_the_exact_one(seed, bins):
    rng = np.random.default_rng(seed)
    masks = np.zeros((12, 48, 48), dtype=bool)
    for i in range(1, 12, 2):
        y, x = rng.integers(0, 36, size=2)
        masks[i, y : y + 12, x : x + 12] = True
    maps = rng.normal(size=masks.shape) + 1.2 * masks  # continuous: every bin mixes scores
    exact = pixel_auroc(maps, masks)
    binned, bound = binned_pixel_auroc(maps, masks, bins)
    assert abs(binned - exact) <= bound
    # quantile bins hold about T / bins pixels each, so the bound is about 1 / bins (docstring)
    assert 0 < bound <= (maps.size / bins + 1) / maps.size
    assert abs(binned - exact) > 0 or bins == 1024


def test_binning_is_exact_when_there_are_few_distinct_scores():
    maps, masks = random_case(2, "integer")
    binned, bound = binned_pixel_auroc(maps, masks, bins=64)
    assert bound == 0.0 and binned == pytest.approx(pixel_auroc(maps, masks), abs=1e-12)


def test_heavy_ties_stay_ties():
    # 90 % of the pixels share one score; the rest are continuous. The tie must not be split.
    rng = np.random.default_rng(0)
    maps = np.where(rng.random((10, 20, 20)) < 0.9, 0.0, rng.normal(size=(10, 20, 20)))
    masks = rng.random((10, 20, 20)) < 0.1
    binned, bound = binned_pixel_auroc(maps, masks, bins=32)
    assert abs(binned - pixel_auroc(maps, masks)) <= bound


def test_resamples_keep_each_stratum_whole_and_follow_the_seed():
    defective = np.array([False, True, True, False, True, False, True, True])
    counts = _resample_counts(defective, 50, seed=7)
    assert (counts[:, ~defective].sum(axis=1) == 3).all() and (counts[:, defective].sum(axis=1) == 5).all()
    assert np.array_equal(counts, _resample_counts(defective, 50, seed=7))
    assert not np.array_equal(counts, _resample_counts(defective, 50, seed=8))


def test_undefined_auroc_gives_nan_not_an_error():
    nan = (math.nan, math.nan)
    assert image_auroc_interval([0.1, 0.5, 0.9], [0, 0, 0]) == pytest.approx(nan, nan_ok=True)
    assert image_auroc_interval([0.1, 0.5, 0.9], [1, 1, 1]) == pytest.approx(nan, nan_ok=True)
    maps = np.random.default_rng(0).random((3, 4, 4))
    assert pixel_auroc_interval(maps, np.zeros_like(maps, bool)) == pytest.approx(nan, nan_ok=True)
    assert pixel_auroc_interval(maps, np.ones_like(maps, bool)) == pytest.approx(nan, nan_ok=True)
    assert math.isnan(binned_pixel_auroc(maps, np.zeros_like(maps, bool))[0])
    # only defective images, but they hold normal pixels too: defined
    masks = np.zeros_like(maps, bool)
    masks[:, 0, 0] = True
    low, high = pixel_auroc_interval(maps, masks, resamples=50)
    assert 0 <= low <= high <= 1


def test_more_images_give_a_narrower_interval():
    small = random_image_case(0, n=40)
    large = random_image_case(0, n=400)
    w_small = np.diff(image_auroc_interval(*small))[0]
    w_large = np.diff(image_auroc_interval(*large))[0]
    assert w_large < 0.6 * w_small  # width shrinks like 1/sqrt(n): about 0.32 here


def test_confidence_and_seed_behave():
    scores, labels = random_image_case(1, n=60)
    a = image_auroc_interval(scores, labels, seed=0)
    assert a == image_auroc_interval(scores, labels, seed=0)
    assert a != image_auroc_interval(scores, labels, seed=1)
    narrow = image_auroc_interval(scores, labels, confidence=0.5, seed=0)
    assert a[0] <= narrow[0] <= narrow[1] <= a[1]


def test_bad_arguments_are_refused():
    scores, labels = random_image_case(0)
    with pytest.raises(ValueError, match="resamples"):
        image_auroc_interval(scores, labels, resamples=0)
    with pytest.raises(ValueError, match="confidence"):
        image_auroc_interval(scores, labels, confidence=1.0)
    with pytest.raises(ValueError, match="confidence"):
        image_auroc_interval(scores, labels, confidence=float("nan"))
    with pytest.raises(ValueError, match="same shape"):
        image_auroc_interval(scores, labels[:-1])
    maps, masks = random_case(0)
    with pytest.raises(ValueError, match="bins"):
        pixel_auroc_interval(maps, masks, bins=1)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        pixel_auroc_interval(maps[0], masks[0])
