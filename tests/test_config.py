import dataclasses
from dataclasses import dataclass, field
from typing import Literal

import pytest

from defectscope.config import (
    ConfigError,
    RunConfig,
    build_config,
    config_from_yaml,
    config_to_yaml,
    from_dict,
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


def test_the_old_model_name_key_and_a_model_that_is_not_a_mapping_are_clear_errors():
    with pytest.raises(ConfigError, match="unknown key 'model_name'"):
        build_config({"model_name": "vq_e"}, "old.yaml")
    for bad in ("vq_e", ["vq_e"]):
        with pytest.raises(ConfigError, match="'model' must be a mapping"):
            build_config({"model": bad}, "x.yaml")
    with pytest.raises(ConfigError, match="'model.name'"):
        build_config({"model": {"name": ["vq_e"]}}, "x.yaml")


@dataclass(frozen=True)
class _Pixels:
    kind: Literal["pixels"] = "pixels"
    perceptual_weight: float = 0.0


@dataclass(frozen=True)
class _Features:
    kind: Literal["features"] = "features"
    jitter: float = 0.0


@dataclass(frozen=True)
class _Chooser:
    target: _Pixels | _Features = field(default_factory=_Pixels)


def test_exclusive_choices_are_one_kind_with_its_own_keys():
    assert from_dict(_Chooser, {}, "model", "f.yaml").target == _Pixels()
    assert from_dict(_Chooser, {"target": "features"}, "model", "f.yaml").target == _Features()
    chosen = from_dict(_Chooser, {"target": {"kind": "features", "jitter": 2}}, "model", "f").target
    assert chosen == _Features(jitter=2.0)
    with pytest.raises(ConfigError) as err:
        from_dict(_Chooser, {"target": {"kind": "features", "perceptual_weight": 1}}, "model", "f.yaml")
    message = str(err.value)  # names both keys that exclude each other, and the file
    assert "f.yaml" in message and "'model.target.perceptual_weight'" in message
    assert "'model.target.kind: features'" in message and "kind 'pixels'" in message
    with pytest.raises(ConfigError, match="'model.target.kind' must be one of 'pixels', 'features'"):
        from_dict(_Chooser, {"target": {"kind": "voxels"}}, "model", "f.yaml")



@pytest.mark.parametrize("kind_last", [False, True])
def test_a_choices_kind_and_its_settings_give_the_same_config_in_either_order(kind_last):
    """`--model.target.jitter 2 --model.target features` once dropped jitter silently; the other order was an error."""
    kind, setting = ["--model.target", "features"], ["--model.target.jitter", "2"]
    overrides = setting + kind if kind_last else kind + setting
    assert parse_overrides(overrides) == {"model": {"target": {"kind": "features", "jitter": 2}}}
    target = load_config(None, ["--model.name", "pvqae", *overrides]).model.target
    assert (target.kind, target.jitter) == ("features", 2.0)
    # a setting of another kind is an error naming both, whichever comes first
    other = ["--model.target", "image"]
    wrong = setting + other if kind_last else other + setting
    with pytest.raises(ConfigError, match=r"'model.target.jitter' does not apply with 'model.target.kind: image'"):
        load_config(None, ["--model.name", "pvqae", *wrong])


def test_a_value_over_settings_given_below_it_is_an_error_in_either_order():
    with pytest.raises(ConfigError, match=r"--data.image_size 128 conflicts with the --data.image_size.\* overrides"):
        parse_overrides(["--data.image_size.x", "1", "--data.image_size", "128"])
    with pytest.raises(ConfigError, match="--data.image_size.x conflicts with --data.image_size given before"):
        parse_overrides(["--data.image_size", "128", "--data.image_size.x", "1"])
