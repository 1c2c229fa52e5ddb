import numpy as np
import pytest

from defectscope.metrics import aupro, image_auroc, pixel_auroc
from defectscope.metrics.curves import cut_at, pixel_curves, pro_curve, roc_curve, thin_curve


def trapezoid(x, y):
    return float(np.sum(0.5 * (y[1:] + y[:-1]) * np.diff(x)))


@pytest.fixture
def maps_and_masks():
    rng = np.random.default_rng(0)
    masks = np.zeros((4, 16, 16), bool)
    masks[0, 2:6, 2:6] = True
    masks[1, 8:15, 1:4] = True
    masks[1, 0:2, 10:16] = True
    maps = rng.random((4, 16, 16)) + 0.8 * masks
    return np.round(maps, 2), masks  # rounding makes ties


def test_roc_area_is_the_auroc_even_with_ties():
    scores = np.array([0.1, 0.4, 0.4, 0.35, 0.8, 0.8, 0.2])
    labels = np.array([0, 0, 1, 1, 1, 0, 0])
    fpr, tpr = roc_curve(scores, labels)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert trapezoid(fpr, tpr) == pytest.approx(image_auroc(scores, labels))


def test_roc_is_none_with_one_class():
    assert roc_curve([0.1, 0.2], [0, 0]) is None


def test_pixel_curves_reproduce_pixel_auroc_and_aupro(maps_and_masks):
    maps, masks = maps_and_masks
    (fpr, tpr), (pfpr, pro) = pixel_curves(maps, masks, 0.3)
    assert trapezoid(fpr, tpr) == pytest.approx(pixel_auroc(maps, masks))
    assert pfpr[-1] == pytest.approx(0.3) and pfpr.max() <= 0.3 + 1e-12
    assert trapezoid(pfpr, pro) / 0.3 == pytest.approx(aupro(maps, masks, 0.3))
    alone = pro_curve(maps, masks, 0.3)
    assert np.array_equal(alone[0], pfpr) and np.array_equal(alone[1], pro)


def test_pro_curve_is_none_without_defects(maps_and_masks):
    maps, _ = maps_and_masks
    assert pixel_curves(maps, np.zeros(maps.shape, bool))[1] is None


def test_cut_at_interpolates_the_last_point():
    x, y = cut_at(np.array([0.0, 0.2, 0.6, 1.0]), np.array([0.0, 0.4, 0.8, 1.0]), 0.4)
    assert x.tolist() == [0.0, 0.2, 0.4] and y[-1] == pytest.approx(0.6)


def test_thinning_keeps_the_ends_and_the_shape():
    x = np.concatenate(([0.0], np.sort(np.random.default_rng(1).random(20000)), [1.0]))
    y = np.sqrt(x)
    tx, ty = thin_curve(x, y, 300)
    assert len(tx) <= 300 and (tx[0], tx[-1]) == (0.0, 1.0)
    assert np.all(np.diff(tx) >= 0)
    assert trapezoid(tx, ty) == pytest.approx(trapezoid(x, y), abs=2e-3)
    short_x, short_y = thin_curve(x[:10], y[:10], 300)
    assert np.array_equal(short_x, x[:10])
