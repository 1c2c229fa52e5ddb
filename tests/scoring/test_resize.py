"""The runtime's numpy resizes are torch's: `resize_image` on the way in, bilinear on the way back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from defectscope.data.transforms import resize_image
from defectscope.detection import image_array
from defectscope.scoring.resize import antialias_weights, bilinear_weights, resize_map, resize_to_square

# (height, width, size): down, up, mixed, odd, tiny, already square at size, a thin strip
SHAPES = [(373, 248, 128), (48, 48, 32), (17, 9, 32), (70, 40, 32), (64, 64, 64), (1, 1, 32), (255, 257, 128),
          (1000, 3, 64)]


@pytest.mark.parametrize(("height", "width", "size"), SHAPES)
def test_resize_to_square_is_resize_image(height, width, size):
    image = np.random.default_rng(height * width).random((height, width, 3), dtype=np.float32)
    ref = resize_image(torch.from_numpy(image).permute(2, 0, 1), size).numpy()
    # float32 sums in another order: a few ulp of values in [0, 1]
    np.testing.assert_allclose(resize_to_square(image, size), ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("height", "width", "size"), SHAPES)
def test_resize_map_is_torch_bilinear(height, width, size):
    amap = np.random.default_rng(size).random((size, size), dtype=np.float32) * 5
    ref = F.interpolate(torch.from_numpy(amap)[None, None], size=(height, width), mode="bilinear",
                        align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(resize_map(amap, (height, width)), ref, rtol=0, atol=5e-6)


@pytest.mark.parametrize(("n", "out"), [(373, 128), (17, 32), (4000, 256), (129, 128), (128, 128)])
def test_weights_are_torchs_own(n, out):
    """Resizing the identity reads a resize's weights off; the sampling positions must match exactly."""
    eye = torch.eye(n)[None, None]
    aa = F.interpolate(eye, size=(out, n), mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()
    plain = F.interpolate(eye, size=(out, n), mode="bilinear", align_corners=False)[0, 0].numpy()
    np.testing.assert_allclose(antialias_weights(n, out), aa, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(bilinear_weights(n, out), plain)
    np.testing.assert_allclose(antialias_weights(n, out).sum(1), 1.0, atol=1e-6)


def test_image_array_reads_grey_uint8_and_float_like_the_detector():
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    out = image_array(grey, 0)
    assert out.shape == (3, 4, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[..., 0], grey / np.float32(255))
    np.testing.assert_array_equal(image_array(np.full((2, 2, 3), 1.5), 0), np.ones((2, 2, 3), np.float32))
    with pytest.raises(ValueError, match="image 3: contains NaN"):
        image_array(np.full((2, 2, 3), np.nan), 3)
    with pytest.raises(ValueError, match=r"image 1: expected an \(H, W, 3\) array"):
        image_array(np.zeros((2, 2, 4), np.uint8), 1)
