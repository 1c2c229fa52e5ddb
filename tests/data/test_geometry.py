"""Resizing, borders and tiles: exact round trips on synthetic images."""

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from defectscope.data.geometry import (
    Box,
    cut_tiles,
    fit,
    fitted_box,
    restore,
    stitch,
    tile_grid,
    tile_origins,
    valid_mask,
)


@given(length=st.integers(1, 900), tile=st.integers(1, 300), overlap=st.integers(0, 299))
@settings(max_examples=200, deadline=None)
def test_tiles_cover_every_pixel_and_stay_inside(length, tile, overlap):
    stride = max(1, tile - min(overlap, tile - 1))
    starts = tile_origins(length, tile, stride)
    covered = torch.zeros(max(length, tile), dtype=torch.bool)
    for s in starts:
        assert 0 <= s and (s + tile <= length or (length < tile and s == 0))
        covered[s:s + tile] = True
    assert covered[:length].all()
    assert all(b - a <= stride for a, b in itertools.pairwise(starts))


@pytest.mark.parametrize("merge", ["mean", "max"])
@pytest.mark.parametrize("hw", [(300, 1000), (1000, 300), (256, 256), (100, 37), (513, 257)])
def test_tiling_then_stitching_a_per_pixel_map_returns_it_exactly(hw, merge):
    """A map that depends only on the pixel comes back unchanged, overlaps and padding included."""
    image = torch.rand(3, *hw, generator=torch.Generator().manual_seed(0))
    origins = tile_grid(hw, 128, 96)
    tiles = cut_tiles(image, origins, 128)
    tile_maps = tiles[:, 0] * 2 - tiles[:, 1]  # any function of the pixel alone
    stitched = stitch(tile_maps, origins, hw, merge)
    assert stitched.shape == hw
    assert torch.equal(stitched, image[0] * 2 - image[1])


@pytest.mark.parametrize("original", [(300, 1000), (1000, 300), (257, 256), (40, 41)])
@pytest.mark.parametrize("size", [(256, 256), (128, 320)])
def test_keep_aspect_keeps_the_shape_and_records_its_border(original, size):
    image = torch.rand(3, *original)
    out, box = fit(image, size, "keep_aspect")
    assert tuple(out.shape[-2:]) == size
    assert box.height <= size[0] and box.width <= size[1]
    assert box.height == size[0] or box.width == size[1]  # scaled until one side fills the canvas
    assert abs(box.height / box.width - original[0] / original[1]) <= 2 / min(box.height, box.width) + 1e-9
    valid = valid_mask(size, box)
    assert (out[:, ~valid] == 0).all()
    back = restore(torch.ones(size) * 5, box, original)
    assert tuple(back.shape) == original


def test_stretch_and_none():
    image = torch.rand(3, 300, 1000)
    stretched, box = fit(image, (256, 256), "stretch")
    assert stretched.shape == (3, 256, 256) and box == Box(0, 0, 256, 256)
    same, box = fit(image, (256, 256), "none")
    assert same is image and box == Box(0, 0, 300, 1000)
    assert fitted_box((300, 1000), (64, 64), "none")[0] == (300, 1000)


def test_a_nearest_mask_stays_binary_and_aligned_with_its_image():
    mask = torch.zeros(1, 300, 1000)
    mask[:, 100:200, 600:700] = 1
    out, box = fit(mask, (256, 256), "keep_aspect", nearest=True)
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    image, image_box = fit(mask.expand(3, -1, -1).contiguous(), (256, 256), "keep_aspect")
    assert box == image_box
    assert ((image[0] > 0.5) == (out[0] > 0.5)).float().mean() > 0.99
