"""The shared scoring path after the network: standardiser, tiles, border, image score (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from defectscope.geometry import Box
from defectscope.scoring.path import STD_FLOOR, MapStandardizer, TileGrid, Viewing, score_canvases


def normal_maps(rng, n, mean, spread):
    return (mean + spread * rng.standard_normal((n, *mean.shape))).astype(np.float32)


def pixel_network(images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A network whose map depends on each pixel alone (its red value), whose own score is a constant."""
    maps = images[:, 0].astype(np.float32)
    return maps, np.full(len(images), -7.0, np.float32)


# ----------------------------------------------------------------------------- standardiser


def test_fit_matches_numpy_per_class_and_pools_for_a_class_without_images():
    rng = np.random.default_rng(0)
    maps = rng.random((10, 4, 5)).astype(np.float32)
    classes = np.array([0] * 6 + [1] * 4)
    std = MapStandardizer.fit(maps, classes, num_classes=3)
    assert std.mean.shape == std.std.shape == (3, 4, 5)
    np.testing.assert_allclose(std.mean[0], maps[:6].mean(0), rtol=1e-5)
    np.testing.assert_allclose(std.std[1], maps[6:].std(0), rtol=1e-5)
    np.testing.assert_allclose(std.mean[2], maps.mean(0), rtol=1e-5)  # class 2 has no held-out images


def test_constant_positions_get_a_floor_instead_of_a_zero_divisor():
    maps = np.zeros((5, 3, 3), np.float32)
    maps[:, 1, 1] = [0.0, 1.0, 2.0, 3.0, 4.0]  # only the centre varies; elsewhere exactly 0
    std = MapStandardizer.fit(maps, np.zeros(5, int), 1)
    floor = STD_FLOOR * maps.std()
    assert std.std[0, 0, 0] == pytest.approx(floor, rel=1e-6)
    assert std.std[0, 1, 1] > floor
    assert np.isfinite(std(np.ones((1, 3, 3), np.float32), np.zeros(1, int))).all()


def test_a_small_bump_where_normals_are_calm_beats_a_large_one_where_they_vary():
    """The reason the option exists: raw maxima sit where normal images vary most."""
    rng = np.random.default_rng(1)
    mean = np.zeros((8, 8))
    spread = np.full((8, 8), 0.01)
    spread[0, :] = 1.0  # a noisy border row on every normal image
    std = MapStandardizer.fit(normal_maps(rng, 200, mean, spread), np.zeros(200, int), 1)
    images = np.zeros((2, 3, 8, 8), np.float32)
    images[0, 0, 0, 3] = 1.5  # normal image: within the border's usual range
    images[1, 0, 5, 5] = 0.2  # defect: small, but far outside what is usual there
    boxes = [Box(0, 0, 8, 8)] * 2
    raw_maps, raw_scores = score_canvases(pixel_network, list(images), boxes, np.zeros(2), Viewing(), 2)
    maps, scores = score_canvases(pixel_network, list(images), boxes, np.zeros(2), Viewing(), 2, std)
    assert raw_scores.tolist() == [-7.0, -7.0]  # stretched whole images: the network's own score stands
    assert raw_maps[0].max() > raw_maps[1].max()
    assert scores[1] > scores[0] and maps[1].argmax() == 5 * 8 + 5
    assert scores.tolist() == [m.max() for m in maps]  # standardised: the score is the z-map's maximum


def test_each_image_uses_its_own_class_statistics():
    maps = np.concatenate([np.zeros((4, 2, 2)), np.full((4, 2, 2), 10.0)]).astype(np.float32)
    maps += np.random.default_rng(2).normal(0, 0.1, maps.shape).astype(np.float32)
    std = MapStandardizer.fit(maps, np.array([0] * 4 + [1] * 4), 2)
    z = std(np.full((2, 2, 2), 10.0, np.float32), np.array([0, 1]))
    assert z[0].max() > 20 and abs(z[1].max()) < 5


def test_a_map_of_another_size_is_refused():
    std = MapStandardizer.fit(np.random.default_rng(0).random((3, 4, 4)), np.zeros(3, int), 1)
    with pytest.raises(ValueError, match=r"fitted on \(4, 4\)"):
        std(np.zeros((1, 8, 8), np.float32), np.zeros(1, int))


# ----------------------------------------------------------------------------- tiles and border


@pytest.mark.parametrize("merge", ["mean", "max"])
@pytest.mark.parametrize(("hw", "tile", "stride"), [((40, 70), 16, 12), ((16, 16), 16, 16), ((10, 30), 16, 8)])
def test_tiles_stitch_back_to_a_pixelwise_map_exactly(hw, tile, stride, merge):
    """A map that depends only on the pixel comes back unchanged through cutting, batching and stitching."""
    image = np.random.default_rng(0).random((3, *hw)).astype(np.float32)
    box = Box(0, 0, *hw)
    viewing = Viewing(tiling=TileGrid(tile, stride, merge))
    maps, scores = score_canvases(pixel_network, [image], [box], np.zeros(1), viewing, batch_size=3)
    np.testing.assert_array_equal(maps[0], image[0])
    assert scores[0] == image[0].max()  # tiled: the stitched map's maximum, never the network's own score


def test_the_border_never_shows_and_never_scores():
    """keep_aspect: a bright border outside the box takes the image's lowest score and is left out of its maximum."""
    image = np.zeros((3, 10, 10), np.float32)
    image[0, :2] = 5.0  # border rows, brighter than anything inside
    image[0, 2:8] = np.linspace(0.1, 0.9, 60).reshape(6, 10)
    box = Box(2, 0, 6, 10)
    for viewing in (Viewing(resize="keep_aspect"), Viewing(resize="keep_aspect", tiling=TileGrid(4, 3))):
        maps, scores = score_canvases(pixel_network, [image], [box], np.zeros(1), viewing, 4)
        assert maps[0][:2].max() == maps[0][:8].min() == np.float32(0.1)
        assert scores[0] == np.float32(0.9)


def test_with_a_standardiser_the_border_stays_hidden_after_z_scoring():
    rng = np.random.default_rng(3)
    std = MapStandardizer.fit(rng.random((5, 6, 6)).astype(np.float32), np.zeros(5, int), 1)
    image = rng.random((3, 6, 6)).astype(np.float32)
    box = Box(1, 1, 4, 4)
    maps, scores = score_canvases(pixel_network, [image], [box], np.zeros(1), Viewing(resize="keep_aspect"), 1, std)
    inner = maps[0][1:5, 1:5]
    assert scores[0] == inner.max()
    outside = np.ones((6, 6), bool)
    outside[1:5, 1:5] = False
    assert (maps[0][outside] == inner.min()).all()
