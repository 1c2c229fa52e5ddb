"""95 % confidence intervals for image and pixel AUROC by a stratified bootstrap over images.

A test set of ~100 images gives an AUROC whose second decimal is noise; the interval says how
much. Images, not pixels, are the independent units, so both intervals resample images: the
normal and the defective images separately (stratified), so every resample keeps the test
set's class balance and the AUROC stays defined. The interval is the percentile interval of
the resampled AUROCs.

Draw protocol (part of the contract, so a run is reproducible from its seed):
``rng = np.random.default_rng(seed)``; then for the normal images, then for the defective
images (each in input order, k of them), ``rng.integers(0, k, size=(resamples, k))``.

Both intervals reduce each resample to counts of positive and negative samples per score
bin, a (resamples × images) matrix of how often each image was drawn times (images × bins)
per-image histograms, and take the AUROC of the binned counts (pairs in the same bin count
one half). For image scores the bins are the distinct score values, so it is exact; for
pixels they are quantile bins (see `binned_pixel_auroc` for the error bound).
"""

from __future__ import annotations

import numbers

import numpy as np
import numpy.typing as npt

from ._core import as_binary, as_scores, check_ndim, check_same_shape

DEFAULT_RESAMPLES = 1000
DEFAULT_BINS = 1024  # pixel-score bins: error ≲ 1/1024 ≈ 1e-3 of AUROC, far inside any interval's width
NAN_INTERVAL = (float("nan"), float("nan"))


def image_auroc_interval(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """(low, high) of the image AUROC: exact per resample (bins = distinct scores); NaN if one class."""
    s = as_scores(scores, "scores")
    y = as_binary(labels, "labels")
    check_ndim(s, 1, "scores", "(N,) one score per image")
    check_same_shape(s, y, "scores", "labels")
    _check_options(resamples, confidence)
    if y.all() or not y.any():
        return NAN_INTERVAL
    _, group = np.unique(s, return_inverse=True)  # bin = rank of the distinct score value
    weights = _resample_counts(y, resamples, seed)  # (R, N)
    order = np.argsort(group, kind="stable")
    starts = np.flatnonzero(np.diff(group[order], prepend=-1))
    pos = np.add.reduceat(weights[:, order] * y[order], starts, axis=1)  # (R, G)
    neg = np.add.reduceat(weights[:, order] * ~y[order], starts, axis=1)
    return _percentiles(_auroc_binned(pos, neg), confidence)


def pixel_auroc_interval(
    maps: npt.ArrayLike,
    masks: npt.ArrayLike,
    *,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    seed: int = 0,
    bins: int = DEFAULT_BINS,
    valid: npt.ArrayLike | None = None,
) -> tuple[float, float]:
    """(low, high) of the pixel AUROC, resampling whole images and pooling their pixels.

    `valid` (N, H, W) bool, when given, marks the pixels that count (maps of different sizes
    stored in one array, or a border that is not part of the image).

    An image is defective when its mask has a defect pixel; normal and defective images are
    resampled separately. Each endpoint is within the binning bound of `binned_pixel_auroc`
    (taken over the resamples) of the exact bootstrap's. NaN if no defect or no normal pixel.
    """
    aucs, _ = _pixel_bootstrap(maps, masks, resamples, confidence, seed, bins, valid)
    return NAN_INTERVAL if aucs is None else _percentiles(aucs, confidence)


def binned_pixel_auroc(maps: npt.ArrayLike, masks: npt.ArrayLike, bins: int = DEFAULT_BINS) -> tuple[float, float]:
    """Pixel AUROC from quantile-binned scores, and the bound on its distance to the exact one.

    Binning only mis-orders pairs of a defect and a normal pixel whose distinct scores share
    a bin, and counts each such pair one half instead of 0 or 1, so with p_b defect and n_b
    normal pixels in bin b (P, N in all):

        |binned − exact| ≤ ½ Σ_b p_b n_b / (P N) ≤ max_b (p_b + n_b) / (2 max(P, N)) ≤ max_b (p_b + n_b) / T.

    Quantile bins hold about T / bins of the T pixels each, so the error is at most about
    1 / bins (1e-3 for 1024 bins); a bin that holds one repeated value is exact, and when
    there are at most `bins` distinct scores every bin is one value and the result is exact.
    Returns (auroc, bound); (NaN, 0) when there is no defect or no normal pixel.
    """
    m, g = _pixel_inputs(maps, masks)
    _check_bins(bins)
    pos, neg, mixed = _pixel_histograms(m, g, bins)
    pos, neg = pos.sum(axis=0, keepdims=True), neg.sum(axis=0, keepdims=True)
    if pos.sum() == 0 or neg.sum() == 0:
        return float("nan"), 0.0
    return float(_auroc_binned(pos, neg)[0]), float(_binning_bound(pos, neg, mixed)[0])


# --- pieces ---------------------------------------------------------------------------------


def _pixel_bootstrap(
    maps: npt.ArrayLike, masks: npt.ArrayLike, resamples: int, confidence: float, seed: int, bins: int,
    valid: npt.ArrayLike | None = None,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Per-resample binned pixel AUROCs and their binning bounds; (None, None) if undefined."""
    m, g = _pixel_inputs(maps, masks)
    _check_options(resamples, confidence)
    _check_bins(bins)
    v = None
    if valid is not None:
        v = as_binary(valid, "valid")
        check_same_shape(m, v, "maps", "valid")
        g = g & v
    if not g.any() or (g == (v if v is not None else True)).all():
        return None, None
    pos_hist, neg_hist, mixed = _pixel_histograms(m, g, bins, v)  # (N, B) each
    weights = _resample_counts(g.reshape(len(g), -1).any(axis=1), resamples, seed)  # (R, N)
    pos, neg = weights @ pos_hist, weights @ neg_hist  # (R, B) pooled counts per resample
    return _auroc_binned(pos, neg), _binning_bound(pos, neg, mixed)


def _pixel_inputs(maps: npt.ArrayLike, masks: npt.ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    m = as_scores(maps, "maps")
    g = as_binary(masks, "masks")
    check_ndim(m, 3, "maps", "(N, H, W)")
    check_same_shape(m, g, "maps", "masks")
    return m, g


def _pixel_histograms(
    maps: np.ndarray, masks: np.ndarray, bins: int, valid: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-image counts of defect and normal pixels per score bin, (N, B) float64 each, and
    which bins hold more than one distinct score (B,) bool (the only ones binning can get wrong).
    Pixels outside `valid` (N, H, W), when given, are not counted.

    Bins start at the distinct scores when there are at most `bins` of them (exact), otherwise
    at every (T / bins)-th sorted score; equal scores always share a bin, so true ties stay ties.
    """
    keep = None if valid is None else valid.reshape(len(maps), -1)
    per_image = maps.reshape(len(maps), -1)
    ordered = np.sort(maps.ravel() if keep is None else per_image[keep])  # one sort of all pixels, not one per resample
    distinct = ordered[np.concatenate(([True], ordered[1:] != ordered[:-1]))]
    lower = distinct if len(distinct) <= bins else np.unique(ordered[(np.arange(bins) * len(ordered)) // bins])
    del ordered
    n_images, n_bins = maps.shape[0], len(lower)
    total = np.zeros((n_images, n_bins))
    pos = np.zeros((n_images, n_bins))
    flat_masks = masks.reshape(len(masks), -1)
    for i in range(n_images):  # image by image: memory of one image, not of every pixel's bin index at once
        scores, defect = per_image[i], flat_masks[i]
        if keep is not None:
            scores, defect = scores[keep[i]], defect[keep[i]]
        index = np.searchsorted(lower, scores, side="right") - 1  # bin of every pixel, in 0…len(lower)-1
        total[i] = np.bincount(index, minlength=n_bins)
        pos[i] = np.bincount(index, weights=defect, minlength=n_bins)
    mixed = np.bincount(np.searchsorted(lower, distinct, side="right") - 1, minlength=n_bins) > 1
    return pos, total - pos, mixed


def _resample_counts(defective: np.ndarray, resamples: int, seed: int) -> np.ndarray:
    """(R, N) float64: how often each image is drawn in each resample, per the draw protocol."""
    rng = np.random.default_rng(seed)
    counts = np.zeros((resamples, len(defective)))
    for stratum in (np.flatnonzero(~defective), np.flatnonzero(defective)):
        k = len(stratum)
        if k == 0:
            continue
        draws = rng.integers(0, k, size=(resamples, k))
        flat = (np.arange(resamples)[:, None] * k + draws).ravel()
        counts[:, stratum] = np.bincount(flat, minlength=resamples * k).reshape(resamples, k)
    return counts


def _auroc_binned(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC per row of (R, B) counts over ascending score bins; a pair in one bin counts one half."""
    below_plus_half = np.cumsum(neg, axis=1) - 0.5 * neg  # normals scored below, plus half the tied
    return (pos * below_plus_half).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _binning_bound(pos: np.ndarray, neg: np.ndarray, mixed: np.ndarray) -> np.ndarray:
    """½ Σ_b p_b n_b / (P N) per row, over the bins that hold more than one distinct score."""
    return 0.5 * (pos * neg * mixed).sum(axis=1) / (pos.sum(axis=1) * neg.sum(axis=1))


def _percentiles(values: np.ndarray, confidence: float) -> tuple[float, float]:
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(values, [tail, 1.0 - tail])
    return float(low), float(high)


def _check_options(resamples: int, confidence: float) -> None:
    if isinstance(resamples, bool) or not isinstance(resamples, numbers.Integral) or resamples < 1:
        raise ValueError(f"resamples must be a positive integer, got {resamples!r}")
    if not (isinstance(confidence, numbers.Real) and 0.0 < confidence < 1.0):  # False for NaN too
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")


def _check_bins(bins: int) -> None:
    if isinstance(bins, bool) or not isinstance(bins, numbers.Integral) or bins < 2:
        raise ValueError(f"bins must be an integer >= 2, got {bins!r}")
