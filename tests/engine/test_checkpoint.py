import pytest
import torch

from defectscope.config import load_config
from defectscope.engine import checkpoint as ckpt_module
from defectscope.engine.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from defectscope.models import create_model
from helpers.calibration import threshold_at


@pytest.fixture
def model_and_config():
    cfg = load_config(None, ["--model.name", "ae_ssim", "--model.base_channels", "4", "--data.image_size", "32"])
    torch.manual_seed(0)
    return create_model("ae_ssim", cfg.model, 32), cfg


def test_round_trip_keeps_weights_config_and_calibration(tmp_path, model_and_config):
    model, cfg = model_and_config
    save_checkpoint(tmp_path / "ck", model, cfg, ["a", "b"], threshold_at(0.5), step=7)
    loaded = load_checkpoint(tmp_path / "ck")
    assert loaded.config == cfg and loaded.class_names == ["a", "b"] and loaded.step == 7
    assert loaded.calibration == threshold_at(0.5)
    for (k, a), (_, b) in zip(model.state_dict().items(), loaded.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert load_checkpoint(tmp_path / "ck" / "model.safetensors").step == 7


def test_a_failed_save_leaves_the_previous_checkpoint_intact(tmp_path, model_and_config, monkeypatch):
    model, cfg = model_and_config
    save_checkpoint(tmp_path / "ck", model, cfg, ["a"], step=1)

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt_module, "save_file", broken)
    with pytest.raises(OSError):
        save_checkpoint(tmp_path / "ck", model, cfg, ["a"], step=2)
    assert load_checkpoint(tmp_path / "ck").step == 1
    assert [p.name for p in tmp_path.iterdir()] == ["ck"]  # no temporary folder left behind


def test_bad_checkpoints_are_named_in_the_error(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.safetensors").write_bytes(b"\x00" * 20)
    with pytest.raises(CheckpointError, match=str(bad)):
        load_checkpoint(bad)


def test_checkpoints_get_ordinary_permissions(tmp_path, model_and_config):
    import os
    import stat

    model, cfg = model_and_config
    umask = os.umask(0o022)
    try:
        save_checkpoint(tmp_path / "ck", model, cfg, ["a"])
    finally:
        os.umask(umask)
    assert stat.S_IMODE((tmp_path / "ck").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "ck" / "model.safetensors").stat().st_mode) == 0o644


def test_load_weights_lets_only_an_unloaded_pretrained_backbone_go_without_its_keys():
    from defectscope.engine.checkpoint import load_weights
    from defectscope.layers.backbones import BackboneConfig, FrozenBackbone

    class WithBackbone(torch.nn.Module):
        def __init__(self, pretrained):
            super().__init__()
            self.head = torch.nn.Linear(2, 2)
            self.backbone = FrozenBackbone(BackboneConfig("mobilenet_v2", "no/such/file", pretrained=pretrained,
                                                          taps=(1,)))

    head_only = {f"head.{k}": v for k, v in torch.nn.Linear(2, 2).state_dict().items()}
    model = WithBackbone(pretrained=True)
    load_weights(model, head_only)  # the backbone will read its own file when first used
    assert torch.equal(model.head.weight, head_only["head.weight"]) and not model.backbone.loaded
    with pytest.raises(ValueError, match="head.bias"):
        load_weights(model, {"head.weight": head_only["head.weight"]})
    with pytest.raises(ValueError, match="backbone"):
        load_weights(WithBackbone(pretrained=False), head_only)  # random-init backbones must come from the state
    with pytest.raises(ValueError, match="extra"):
        load_weights(model, {**head_only, "extra": torch.zeros(1)})
