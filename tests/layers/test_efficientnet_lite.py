"""EfficientNet-Lite written here: the architecture's numbers, TF "SAME" padding, strict key match."""

import importlib.util

import pytest
import torch
import torch.nn.functional as F

from defectscope.layers.backbones import SPECS, BackboneConfig, weights_file
from defectscope.layers.backbones.efficientnet_lite import (
    VARIANTS,
    EfficientNetLite,
    SameConv2d,
    round_channels,
    stage_ends,
    tap_table,
)


def test_width_rounding_follows_tf_round_filters():
    assert [round_channels(c, 1.1) for c in (16, 24, 40, 80, 112, 192, 320)] == [16, 24, 48, 88, 120, 208, 352]
    assert round_channels(40, 1.0) == 40


@pytest.mark.parametrize(("variant", "blocks", "ends", "last_channels"), [
    ("efficientnet_lite0", 16, [0, 2, 4, 7, 10, 14, 15], 320),
    ("efficientnet_lite1", 21, [0, 3, 6, 10, 14, 19, 20], 320),  # depth 1.1: ceil(1.1 n), first/last stage fixed
    ("efficientnet_lite2", 21, [0, 3, 6, 10, 14, 19, 20], 352),
])
def test_depth_and_width_multipliers(variant, blocks, ends, last_channels):
    net = EfficientNetLite(variant, head=True)
    assert net.num_blocks == len(net._blocks) == blocks and stage_ends(variant) == ends
    assert tap_table(variant)[blocks - 1] == (last_channels, 32)
    assert not any(hasattr(b, "_se_reduce") for b in net._blocks)  # Lite drops squeeze-excitation
    assert net(torch.rand(1, 3, 64, 64), (ends[2], ends[4]))[1].shape == (1, tap_table(variant)[ends[4]][0], 4, 4)


@pytest.mark.parametrize("size", [8, 9])
@pytest.mark.parametrize("kernel", [3, 5])
def test_same_padding_puts_the_extra_pixel_bottom_right_as_tensorflow_does(size, kernel):
    torch.manual_seed(0)
    conv = SameConv2d(2, 2, kernel, stride=2)
    x = torch.rand(1, 2, size, size)
    total = max((-(-size // 2) - 1) * 2 + kernel - size, 0)  # TF: pad so that out = ceil(in / stride)
    ref = F.conv2d(F.pad(x, [total // 2, total - total // 2] * 2), conv.weight, stride=2)
    out = conv(x)
    assert out.shape[-1] == -(-size // 2) and torch.allclose(out, ref)
    if total % 2:  # an even input: PyTorch's symmetric padding would shift every output by one pixel
        assert not torch.allclose(out, F.conv2d(x, conv.weight, stride=2, padding=kernel // 2))
    same = SameConv2d(2, 2, kernel)
    assert torch.allclose(same(x), F.conv2d(x, same.weight, padding=kernel // 2))


def test_batch_norm_uses_tensorflow_s_epsilon():
    bns = [m for m in EfficientNetLite("efficientnet_lite0").modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 for m in bns)


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_packaged_state_dict_loads_strictly_into_the_full_network(variant):
    if importlib.util.find_spec(SPECS[variant].module) is None:
        pytest.skip(f"{SPECS[variant].distribution} is not installed")
    state = torch.load(weights_file(BackboneConfig(variant)), map_location="cpu", weights_only=True)
    net = EfficientNetLite(variant, head=True)
    net.load_state_dict(state, strict=True)  # every key, every shape, nothing left over
    assert len(state) == len(net.state_dict())
