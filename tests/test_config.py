import dataclasses

import pytest

from defectscope.config import (
    ConfigError,
    RunConfig,
    build_config,
    config_from_yaml,
    config_to_yaml,
    load_config,
    parse_overrides,
)
from defectscope.models.vq_e.config import VQEConfig


def write(tmp_path, text):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    return path


def test_defaults_without_file():
    cfg = load_config(None)
    assert isinstance(cfg, RunConfig)
    assert cfg.data.image_size == 256


def test_file_and_overrides_map_onto_typed_dataclasses(tmp_path):
    path = write(tmp_path, "model: {name: vq_e, num_codes: 64}\ndata:\n  sources: [{layout: mtsd, root: /x}]\n")
    cfg = load_config(path, ["--model.code_dim", "16", "--train.lr=1e-3", "--data.augment.hflip", "false"])
    assert isinstance(cfg.model, VQEConfig)
    assert (cfg.model.num_codes, cfg.model.code_dim) == (64, 16)
    assert cfg.train.lr == pytest.approx(1e-3) and isinstance(cfg.train.lr, float)
    assert cfg.data.augment.hflip is False
    assert cfg.data.sources[0].layout == "mtsd"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0


@pytest.mark.parametrize(
    ("text", "overrides", "names"),
    [
        ("train: {lrr: 1}\n", [], ["train.lrr", "run.yaml"]),
        ("", ["--model.codes", "3"], ["model.codes"]),
        ("train: {epochs: many}\n", [], ["train.epochs", "many"]),
        ("train: {lr_schedule: wavy}\n", [], ["train.lr_schedule", "wavy"]),
        ("model: {name: nope}\n", [], ["model.name", "nope"]),
        ("data: {sources: [{layout: mtsd}]}\n", [], ["data.sources[0]"]),
        ("train: [1, 2]\n", [], ["train"]),
    ],
)
def test_wrong_key_or_value_names_it(tmp_path, text, overrides, names):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), overrides)
    for name in names:
        assert name in str(err.value)


def test_missing_file_and_bad_yaml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path, "train: {epochs: [\n"))


def test_resolved_yaml_round_trips(tmp_path):
    cfg = load_config(write(tmp_path, "model: {name: vq_e, beta: 0.5}\n"), ["--train.epochs", "3"])
    assert config_from_yaml(config_to_yaml(cfg), "round trip") == cfg


def test_override_parser_reads_yaml_values():
    assert parse_overrides(["--a.b", "1", "--a.c=[1, 2]", "--d", "x"]) == {"a": {"b": 1, "c": [1, 2]}, "d": "x"}
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--a.b"])
    with pytest.raises(ConfigError, match="expected --section.key"):
        parse_overrides(["value"])


def test_a_renamed_model_key_still_loads_under_its_new_name_with_a_warning():
    old = {"perceptual_backbone_path": "old/file.safetensors", "perceptual_pretrained": False}
    raw = {"model": {"name": "pvqae", **old}}
    with pytest.warns(UserWarning, match="'model.perceptual_backbone_path' is now 'model.backbone_path'"):
        cfg = build_config(raw, "stored config")
    assert (cfg.model.backbone_path, cfg.model.backbone_pretrained) == ("old/file.safetensors", False)


def test_an_old_and_a_new_name_that_disagree_are_an_error():
    raw = {"model": {"name": "pvqae", "perceptual_backbone_path": "a.safetensors", "backbone_path": "b.safetensors"}}
    with pytest.raises(ConfigError, match="old name of 'model.backbone_path'"):
        build_config(raw, "x.yaml")
