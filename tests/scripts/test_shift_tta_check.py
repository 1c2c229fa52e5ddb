"""scripts/shift_tta_check.py: a shift moves the content and keeps the size; the variants are what they say."""

from types import SimpleNamespace

import pytest
import torch

from helpers.scripts import load_script


@pytest.fixture(scope="module")
def shift_tta_check():
    return load_script("shift_tta_check")


def test_a_shift_moves_the_content_and_reflects_into_the_uncovered_band(shift_tta_check):
    images = torch.arange(2 * 3 * 6 * 5, dtype=torch.float32).reshape(2, 3, 6, 5)
    moved = shift_tta_check.shifted(images, 2, 1)
    assert moved.shape == images.shape
    assert torch.equal(moved[..., 2:, 1:], images[..., :4, :4])  # content two rows down, one column right
    assert torch.equal(moved[..., 2, 0], images[..., 0, 1])  # the uncovered column mirrors the one beside it
    assert torch.equal(shift_tta_check.shifted(images, 0, 0), images)


def test_the_variants_are_the_plain_score_the_means_and_the_minimum(shift_tta_check):
    class ByPosition:  # scores an image by its top-left pixel: each position gives another value
        def predict(self, images):
            return SimpleNamespace(image_score=images[:, 0, 0, 0].clone())

    images = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = shift_tta_check.variants(ByPosition(), images, 1)
    per_position = torch.stack([images[:, 0, 0, 0], images[:, 0, 1, 0], images[:, 0, 0, 1], images[:, 0, 1, 1]], 1)
    assert torch.allclose(out, torch.stack([per_position[:, 0], per_position[:, [0, 3]].mean(1),
                                            per_position.mean(1), per_position.amin(1)], 1))
