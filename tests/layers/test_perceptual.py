"""The perceptual loss: LPIPS's unweighted distance, frozen backbone, gradients into the reconstruction."""

from pathlib import Path

import pytest
import torch

from defectscope.layers.backbones import BackboneConfig, BackboneWeightsError
from defectscope.layers.perceptual import PerceptualLoss, unit_channels

MOBILENET_FILE = Path(__file__).resolve().parents[2].parent / "shared" / "weights" / \
    "mobilenetv2_imagenet_features.safetensors"


def loss_fn(taps=(), name="mobilenet_v2"):
    torch.manual_seed(0)
    return PerceptualLoss(BackboneConfig(name, pretrained=False, taps=taps))


def test_zero_for_identical_images_and_positive_otherwise():
    loss = loss_fn()
    x = torch.rand(2, 3, 32, 32)
    assert loss(x, x).item() == pytest.approx(0.0, abs=1e-6)
    assert loss(x, x.flip(-1)).item() > 1e-3


def test_matches_a_per_position_reference():
    loss = loss_fn(taps=(3, 6))
    x, y = torch.rand(2, 2, 3, 32, 32)
    total = 0.0
    with torch.no_grad():
        for fx, fy in zip(loss.net(x), loss.net(y), strict=True):
            per_tap = 0.0
            for b in range(fx.shape[0]):
                for i in range(fx.shape[2]):
                    for j in range(fx.shape[3]):
                        u, v = fx[b, :, i, j], fy[b, :, i, j]
                        per_tap += float(((u / u.norm() - v / v.norm()) ** 2).sum())
            total += per_tap / (fx.shape[0] * fx.shape[2] * fx.shape[3])
        assert loss(x, y).item() == pytest.approx(total, rel=1e-4)


def test_unit_channels_have_unit_length():
    f = torch.randn(2, 5, 3, 3) * 7
    assert torch.allclose(unit_channels(f).norm(dim=1), torch.ones(2, 3, 3), atol=1e-6)


def test_gradients_reach_the_reconstruction_only():
    loss = loss_fn()
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = torch.rand(1, 3, 32, 32, requires_grad=True)
    loss(x, y).backward()
    assert x.grad is None
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert all(p.grad is None for p in loss.parameters())


def test_backbone_stays_in_eval_mode():
    loss = loss_fn().train()
    assert not loss.net.training and not any(m.training for m in loss.net.modules())


def test_missing_weights_file_is_named():
    loss = PerceptualLoss(BackboneConfig(path="no/such/file.safetensors"))
    with pytest.raises(BackboneWeightsError, match=r"no/such/file\.safetensors.*model\.backbone\.path"):
        loss(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))


def test_unknown_backbone():
    with pytest.raises(ValueError, match="vgg16"):
        PerceptualLoss(BackboneConfig("vgg16"))  # type: ignore[arg-type]


def test_default_taps_are_one_per_stride_from_2_to_16():
    for name in ("mobilenet_v2", "efficientnet_lite1"):
        assert loss_fn(name=name).net.tap_strides == [2, 4, 8, 16]


@pytest.mark.skipif(not MOBILENET_FILE.is_file(), reason=f"needs the shared MobileNetV2 weights ({MOBILENET_FILE})")
def test_pretrained_distance_ranks_a_blurred_image_closer_than_noise():
    loss = PerceptualLoss(BackboneConfig("mobilenet_v2", str(MOBILENET_FILE)))
    torch.manual_seed(0)
    x = torch.nn.functional.interpolate(torch.rand(1, 3, 8, 8), size=64, mode="bilinear", align_corners=False)
    blurred = torch.nn.functional.avg_pool2d(x, 3, 1, 1)
    noisy = (x + 0.3 * torch.randn_like(x)).clamp(0, 1)
    assert loss(x, blurred) < loss(x, noisy)


def test_perceptual_distance_map_sums_the_upsampled_taps():
    torch.manual_seed(0)
    loss = PerceptualLoss(BackboneConfig("mobilenet_v2", pretrained=False, taps=(1, 3)))
    x, y = torch.rand(2, 1, 3, 32, 32)
    maps = loss.distance_maps(x, y)
    assert [m.shape[-1] for m in maps] == [16, 8]
    dense = loss.distance_map(x, y)
    assert dense.shape == (1, 32, 32)
    # bilinear upsampling keeps each tap's mean up to border effects
    assert dense.mean().item() == pytest.approx(sum(m.mean() for m in maps).item(), rel=0.05)
