"""Maps of different sizes in one array: pixels outside `valid` must not count, whatever they hold."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from defectscope.metrics import measure, pixel_auroc_interval

from .reference import aupro_reference


def _images(seed: int):
    rng = np.random.default_rng(seed)
    sizes = [(20, 31), (37, 12), (25, 25), (9, 40)]
    maps = [rng.random(s) for s in sizes]
    masks = [np.zeros(s, bool) for s in sizes]
    masks[0][3:8, 4:10] = True
    masks[2][10:20, 2:5] = True
    masks[2][0:2, 20:25] = True
    for m, g in zip(maps, masks, strict=True):
        m[g] += 0.3  # defects score higher, not perfectly
    return maps, masks


def _packed(maps, masks, fill):
    height, width = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
    out = np.full((len(maps), height, width), fill)
    gt = np.zeros(out.shape, bool)
    valid = np.zeros(out.shape, bool)
    for i, (m, g) in enumerate(zip(maps, masks, strict=True)):
        out[i, : m.shape[0], : m.shape[1]] = m
        gt[i, : m.shape[0], : m.shape[1]] = g
        valid[i, : m.shape[0], : m.shape[1]] = True
    return out, gt, valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pixels_outside_valid_do_not_count(seed):
    maps, masks = _images(seed)
    scores, labels = np.array([m.max() for m in maps]), np.array([g.any() for g in masks])
    low = measure(scores, labels, *_packed(maps, masks, -5.0)[:2], valid=_packed(maps, masks, -5.0)[2]).metrics
    high = measure(scores, labels, *_packed(maps, masks, 9.0)[:2], valid=_packed(maps, masks, 9.0)[2]).metrics
    assert low == high  # junk in the padding, low or high, changes nothing
    flat_maps = np.concatenate([m.ravel() for m in maps])
    flat_masks = np.concatenate([g.ravel() for g in masks])
    assert low["pixel_auroc"] == pytest.approx(roc_auc_score(flat_masks, flat_maps))
    # AU-PRO against the brute-force reference on one strip that holds every image side by side,
    # separated by a column of never-defective pixels scored below everything (so FPR counts them
    # last, beyond the 0.3 limit, and they split no region)
    height = max(m.shape[0] for m in maps)
    strip_maps, strip_masks = [], []
    for m, g in zip(maps, masks, strict=True):
        pad = height - m.shape[0]
        strip_maps.append(np.pad(m, ((0, pad), (0, 1)), constant_values=-100.0))
        strip_masks.append(np.pad(g, ((0, pad), (0, 1))))
    strip_m, strip_g = np.concatenate(strip_maps, 1)[None], np.concatenate(strip_masks, 1)[None]
    extra = strip_g.size - flat_masks.size  # padding pixels the strip adds as normal ones
    assert extra > 0
    # the reference counts the padding as normal pixels at the lowest score; rescale FPR to compare
    ref = aupro_reference(strip_m, strip_g, fpr_limit=0.3 * (flat_masks.size - flat_masks.sum())
                          / (strip_g.size - strip_g.sum()))
    assert low["aupro"] == pytest.approx(ref, abs=1e-9)


def test_the_pixel_interval_ignores_padding_too():
    maps, masks = _images(3)
    a = pixel_auroc_interval(*_packed(maps, masks, -5.0)[:2], valid=_packed(maps, masks, -5.0)[2], resamples=200)
    b = pixel_auroc_interval(*_packed(maps, masks, 9.0)[:2], valid=_packed(maps, masks, 9.0)[2], resamples=200)
    assert a == pytest.approx(b, abs=2e-3)
