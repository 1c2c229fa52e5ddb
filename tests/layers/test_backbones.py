"""Backbones written here: shapes, frozen behaviour, and the local-weights loader's checks."""

from pathlib import Path

import pytest
import torch

from defectscope.layers.backbones import PUBLISHED_SHA256, BackboneWeightsError, FrozenBackbone, sha256_of
from defectscope.layers.backbones.mobilenetv2 import MobileNetV2Features
from defectscope.layers.backbones.resnet import ResNetFeatures
from defectscope.layers.patch_features import PatchFeatures, aggregate_taps

SHARED_WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
MOBILENET_FILE = SHARED_WEIGHTS / "mobilenetv2_imagenet_features.safetensors"


@pytest.mark.parametrize(("name", "taps", "channels", "strides"), [
    ("mobilenet_v2", (3, 6, 13), [24, 32, 96], [4, 8, 16]),
    ("resnet18", (1, 2, 3), [64, 128, 256], [4, 8, 16]),
    ("wide_resnet50_2", (2, 3), [512, 1024], [8, 16]),
])
def test_taps_have_the_documented_channels_and_strides(name, taps, channels, strides):
    net = FrozenBackbone(name, taps, pretrained=False)
    out = net(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in out] == channels == net.tap_channels
    assert [64 // f.shape[-1] for f in out] == strides == net.tap_strides


def test_resnet_keys_are_torchvisions():
    keys = set(ResNetFeatures("wide_resnet50_2").state_dict())
    assert {"conv1.weight", "bn1.running_mean", "layer1.0.downsample.0.weight", "layer3.5.conv3.weight",
            "layer2.0.bn2.num_batches_tracked"} <= keys
    assert ResNetFeatures("wide_resnet50_2").layer1[0].conv2.weight.shape == (128, 128, 3, 3)  # width 2 × 64


def test_mobilenet_keys_follow_the_shared_file_layout():
    keys = set(MobileNetV2Features().state_dict())
    assert {"features.0.0.weight", "features.1.conv.3.weight", "features.2.conv.7.running_var",
            "features.18.1.bias"} <= keys
    assert sum(v.numel() for k, v in MobileNetV2Features().state_dict().items() if "num_batches" not in k) == 2_257_984


def test_the_backbone_stays_frozen_and_in_eval_mode():
    net = FrozenBackbone("resnet18", (2, 3), pretrained=False)
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())


def test_a_missing_weights_file_is_a_clear_error_only_when_features_are_needed(tmp_path):
    net = FrozenBackbone("resnet18", (2, 3), path=str(tmp_path / "resnet18.pth"))  # constructing reads nothing
    with pytest.raises(BackboneWeightsError, match=r"resnet18\.pth.*never downloads.*backbone_path"):
        net(torch.rand(1, 3, 32, 32))


def write_torchvision_like(path, arch="resnet18"):
    state = ResNetFeatures(arch).state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # keys we do not build are ignored
    state["layer4.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, path)
    return state


def test_torchvision_format_state_dicts_load_after_the_sha256_check(tmp_path):
    path = tmp_path / "resnet18.pth"
    state = write_torchvision_like(path)
    with pytest.raises(BackboneWeightsError, match=f"sha256 .* not the expected {PUBLISHED_SHA256['resnet18']}"):
        FrozenBackbone("resnet18", (2, 3), str(path))(torch.rand(1, 3, 32, 32))
    net = FrozenBackbone("resnet18", (2, 3), str(path), sha256=sha256_of(path))
    net(torch.rand(1, 3, 32, 32))
    assert torch.equal(net.net.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    unchecked = FrozenBackbone("resnet18", (2, 3), str(path), sha256="")
    unchecked.ensure_loaded()
    assert torch.equal(unchecked.net.bn1.running_var, state["bn1.running_var"])


def test_a_file_that_does_not_fit_names_the_missing_keys(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(BackboneWeightsError, match="does not fit backbone 'resnet18'.*bn1"):
        FrozenBackbone("resnet18", (2, 3), str(path), sha256="").ensure_loaded()


def test_pickled_code_is_refused(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": Path("x")}, path)
    with pytest.raises(BackboneWeightsError, match="cannot read"):
        FrozenBackbone("resnet18", (2, 3), str(path), sha256="").ensure_loaded()


def test_weights_restored_from_a_checkpoint_need_no_file(tmp_path):
    source = FrozenBackbone("resnet18", (2, 3), pretrained=False)
    restored = FrozenBackbone("resnet18", (2, 3), str(tmp_path / "absent.pth"))
    restored.load_state_dict(source.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(restored(x), source(x), strict=True))


def test_aggregation_averages_each_neighbourhood_and_resizes_to_the_finest_grid():
    fine, coarse = torch.rand(2, 3, 8, 8), torch.rand(2, 5, 4, 4)
    out = aggregate_taps([fine, coarse], neighbourhood=3, mode="nearest")
    assert out.shape == (2, 8, 8, 8)
    assert torch.allclose(out[:, :3, 2, 5], fine[:, :, 1:4, 4:7].mean(dim=(2, 3)))
    plain = aggregate_taps([fine, coarse], neighbourhood=1, mode="nearest")
    assert torch.equal(plain[:, 3:, 5, 2], coarse[:, :, 2, 1])
    assert PatchFeatures(FrozenBackbone("mobilenet_v2", (6, 13), pretrained=False)).grid(100) == 13


@pytest.mark.skipif(not MOBILENET_FILE.is_file(),
                    reason="../shared/weights/mobilenetv2_imagenet_features.safetensors is absent")
def test_the_shared_mobilenet_file_loads_and_gives_ordinary_features():
    net = FrozenBackbone("mobilenet_v2", (6, 13), str(MOBILENET_FILE))
    net.ensure_loaded()
    assert net.net.features[0][1].running_var.abs().sum() > 0
    g = torch.Generator().manual_seed(0)
    out = net(torch.rand(2, 3, 64, 64, generator=g))
    assert all(torch.isfinite(f).all() and f.std() > 0.05 for f in out)


def test_an_unread_pretrained_backbone_leaves_no_random_weights_in_a_state_dict():
    net = FrozenBackbone("mobilenet_v2", (1,), path="no/such/file")
    holder = torch.nn.Sequential(torch.nn.Linear(2, 2), net)
    assert set(holder.state_dict()) == {"0.weight", "0.bias"}
    random_init = FrozenBackbone("mobilenet_v2", (1,), pretrained=False)
    assert any(k.startswith("net.") for k in random_init.state_dict())
