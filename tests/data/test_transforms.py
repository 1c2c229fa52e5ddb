"""Resizing and augmentation on tensors: shapes, binary masks, alignment, reproducibility."""

from __future__ import annotations

import pytest
import torch

from defectscope.data import AugmentConfig, augment, resize_image, resize_mask
from defectscope.data.transforms import (
    adjust_brightness,
    adjust_contrast,
    adjust_saturation,
    from_uint8,
    to_uint8,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def random_pair(seed: int = 0, height: int = 20, width: int = 28):
    g = gen(seed)
    image = torch.rand(3, height, width, generator=g)
    mask = (torch.rand(1, height, width, generator=g) > 0.7).float()
    return image, mask


# --------------------------------------------------------------------------- resize


def test_resize_image_shape_range_and_constant() -> None:
    image, _ = random_pair()
    out = resize_image(image, 16)
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    flat = torch.full((3, 37, 23), 0.3)
    torch.testing.assert_close(resize_image(flat, 64), torch.full((3, 64, 64), 0.3))
    assert resize_image(torch.rand(2, 3, 10, 12), 8).shape == (2, 3, 8, 8)
    same = torch.rand(3, 8, 8)
    assert torch.equal(resize_image(same, 8), same)  # already the right size: untouched


def test_resize_image_antialiases() -> None:
    stripes = torch.zeros(3, 64, 64)
    stripes[..., ::2] = 1.0  # one-pixel stripes: must average out, not alias
    out = resize_image(stripes, 8)
    torch.testing.assert_close(out, torch.full_like(out, 0.5), atol=0.02, rtol=0)


def test_resize_mask_stays_binary_and_keeps_dtype() -> None:
    _, mask = random_pair()
    out = resize_mask(mask, 13)
    assert out.shape == (1, 13, 13) and out.dtype == torch.float32
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert resize_mask(mask.bool(), 7).dtype == torch.bool
    # nearest sampling on an exact 2x downscale picks one pixel of each 2x2 block
    block = torch.zeros(1, 8, 8)
    block[:, 2:6, 4:8] = 1.0
    expected = torch.zeros(1, 4, 4)
    expected[:, 1:3, 2:4] = 1.0
    torch.testing.assert_close(resize_mask(block, 4), expected)


def test_resize_image_and_mask_stay_aligned() -> None:
    image = torch.zeros(3, 30, 50)
    mask = torch.zeros(1, 30, 50)
    image[:, 10:20, 20:40] = 1.0
    mask[:, 10:20, 20:40] = 1.0
    img, msk = resize_image(image, 25), resize_mask(mask, 25)
    assert float(img[0][msk[0] == 1].min()) > 0.5
    assert float(img[0][msk[0] == 0].max()) < 1.0


# --------------------------------------------------------------------------- augmentation


def marked_pair(seed: int = 0):
    """Image whose value at mask pixels is exactly 1 and elsewhere below 0.5."""
    image, mask = random_pair(seed)
    image = image * 0.4
    image = torch.where(mask.bool().expand_as(image), torch.ones_like(image), image)
    return image, mask


def test_flips_keep_image_and_mask_aligned() -> None:
    image, mask = marked_pair()
    cfg = AugmentConfig(hflip=True, vflip=True)
    seen = set()
    for seed in range(24):
        out_image, out_mask = augment(image, mask, cfg, gen(seed))
        assert out_image.shape == image.shape and out_mask.shape == mask.shape
        assert torch.equal(out_image == 1.0, out_mask.bool().expand_as(out_image))
        variants = {
            (False, False): mask,
            (True, False): mask.flip(-1),
            (False, True): mask.flip(-2),
            (True, True): mask.flip(-1).flip(-2),
        }
        matches = [k for k, v in variants.items() if torch.equal(out_mask, v)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 4  # every flip combination occurs


def test_augment_is_reproducible_from_the_generator() -> None:
    image, mask = random_pair()
    cfg = AugmentConfig(hflip=True, vflip=True, brightness=0.3, contrast=0.3, saturation=0.3)
    a = augment(image, mask, cfg, gen(7))
    b = augment(image, mask, cfg, gen(7))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    others = [augment(image, mask, cfg, gen(s))[0] for s in range(8, 12)]
    assert any(not torch.equal(a[0], o) for o in others)


def test_colour_jitter_changes_image_only_and_stays_in_range() -> None:
    image, mask = random_pair()
    cfg = AugmentConfig(hflip=False, vflip=False, brightness=0.5, contrast=0.5, saturation=0.5)
    for seed in range(10):
        out_image, out_mask = augment(image, mask, cfg, gen(seed))
        assert torch.equal(out_mask, mask)
        assert 0.0 <= float(out_image.min()) and float(out_image.max()) <= 1.0


def test_brightness_factor_range() -> None:
    image = torch.full((3, 4, 4), 0.5)
    cfg = AugmentConfig(hflip=False, brightness=0.4)
    values = [float(augment(image, image[:1], cfg, gen(s))[0].mean()) for s in range(50)]
    assert min(values) >= 0.5 * 0.6 - 1e-6 and max(values) <= 0.5 * 1.4 + 1e-6
    assert max(values) - min(values) > 0.2


def test_no_augmentation_is_identity() -> None:
    image, mask = random_pair()
    cfg = AugmentConfig(hflip=False, vflip=False)
    out_image, out_mask = augment(image, mask, cfg, gen(0))
    assert torch.equal(out_image, image) and torch.equal(out_mask, mask)


def test_saturation_is_a_no_op_on_grey_images() -> None:
    grey = torch.rand(1, 9, 9, generator=gen(1)).expand(3, -1, -1)
    for factor in (0.0, 0.5, 1.7):
        torch.testing.assert_close(adjust_saturation(grey, factor), grey, atol=1e-6, rtol=0)
    colour, _ = random_pair()
    assert not torch.allclose(adjust_saturation(colour, 0.0), colour)


def test_colour_adjustments() -> None:
    image, _ = random_pair()
    torch.testing.assert_close(adjust_brightness(image, 1.0), image)
    torch.testing.assert_close(adjust_contrast(image, 1.0), image)
    flat = adjust_contrast(image, 0.0)
    assert float(flat.std()) < 1e-6
    assert float(adjust_brightness(image, 0.0).max()) == 0.0


def test_negative_jitter_is_rejected() -> None:
    image, mask = random_pair()
    with pytest.raises(ValueError, match="brightness"):
        augment(image, mask, AugmentConfig(brightness=-0.1), gen(0))


def test_uint8_round_trip() -> None:
    image, _ = random_pair()
    packed = to_uint8(image)
    assert packed.dtype == torch.uint8
    torch.testing.assert_close(from_uint8(packed), image, atol=0.5 / 255 + 1e-6, rtol=0)
