"""YAML files and dotted command-line overrides mapped onto frozen dataclasses.

One path for every setting: defaults live in the dataclasses, a YAML file holds only the
differences, and `--section.key value` on the command line overrides both. Unknown keys and
values of the wrong type are errors that name the key and the file.
"""

from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from defectscope.checks import Above, AtLeast, Check, NonNegativeInt, PositiveInt
from defectscope.data.config import DataConfig, Seed
from defectscope.errors import UserError


class ConfigError(UserError):
    """A configuration key or value is wrong; the message names it and where it came from."""


@dataclass(frozen=True)
class Finite(Check):
    """No NaN and no infinity: `lr: .inf` passes `> 0` but trains nothing."""

    def holds(self, value: float) -> bool:
        return math.isfinite(value)

    def describe(self) -> str:
        return "a finite number"


@dataclass(frozen=True)
class DeviceSpec(Check):
    """What Fabric's `devices` takes from a config: "auto", a count ("2") or device indices ("0,1" or "1,")."""

    def holds(self, value: str) -> bool:  # type: ignore[override] - a check on a string
        if value == "auto" or re.fullmatch(r"[1-9][0-9]*", value):
            return True
        indices = value.rstrip(",").split(",")
        return "," in value and all(i.isdigit() for i in indices) and len(set(indices)) == len(indices)

    def describe(self) -> str:
        return "'auto', a positive device count such as 2, or a comma list of device indices such as '0,1' or '1,'"


FiniteAtLeastZero = Annotated[float, AtLeast(0), Finite()]
# Fabric's own precision names (lightning.fabric.plugins.precision.precision._PRECISION_INPUT_STR)
Precision = Literal["32-true", "64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "transformer-engine",
                    "transformer-engine-float16"]


@dataclass(frozen=True)
class TrainConfig:
    epochs: PositiveInt = 10
    max_steps: NonNegativeInt = 0  # 0: no step limit (epochs decide)
    max_minutes: FiniteAtLeastZero = 0.0  # 0: no time limit; otherwise stop after this wall-clock budget
    lr: Annotated[float, Above(0), Finite()] = 2e-4
    weight_decay: FiniteAtLeastZero = 0.0
    warmup_steps: NonNegativeInt = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: FiniteAtLeastZero = 0.0  # 0: off
    seed: Seed = 0  # also fixes the order of the training images in every epoch
    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    devices: Annotated[str, DeviceSpec()] = "auto"  # "auto", a count ("2") or a list ("0,1")
    strategy: str = "auto"  # "auto" picks DDP when more than one process runs
    precision: Precision = "32-true"  # e.g. "bf16-mixed" on a GPU
    checkpoint_every: NonNegativeInt = 0  # steps between periodic checkpoints; 0: only the final one
    log_every: PositiveInt = 10  # steps between log lines
    progress: bool = True


@dataclass(frozen=True)
class HoldOutCalibration:
    """Thresholds from the normal training images the model never saw: data.validation_fraction of them."""

    kind: Literal["hold_out"] = "hold_out"


@dataclass(frozen=True)
class CrossFitCalibration:
    """Every normal training image calibrates: `folds` models, each fitted on the other folds, score the
    fold they did not see; the model that ships is fitted on all of them. One-pass models only (a
    memory bank, Gaussians, a mean image): a trained model would train `folds` + 1 times."""

    kind: Literal["cross_fit"] = "cross_fit"
    # more folds: each fold's model sees more images, closer to the shipped one (a memory bank of
    # 4/5 of the images is sparser than the full one, so its scores run a little high)
    folds: Annotated[int, Check(2, 50)] = 5


@dataclass(frozen=True)
class EvalConfig:
    save_maps: bool = False  # write anomaly maps (PNG overlays and .npy) into the run dir
    max_saved_maps: NonNegativeInt = 32
    pixel_metrics: bool = True
    # "position": z-score each map position by its mean and spread on the held-out normal
    # images, per class (engine/standardize.py); "none": the model's own map and score
    map_standardization: Literal["none", "position"] = "none"
    # 95 % intervals of the AUROCs: stratified bootstrap over test images; 0 turns them off
    bootstrap_resamples: NonNegativeInt = 1000
    # the image threshold is set so that a new normal image scores above it with probability at
    # most this (engine/calibrate.py: the conformal order-statistic rule on held-out normal images)
    false_alarm_rate: Annotated[float, Check(0, 1, low_open=True, high_open=True)] = 0.01
    # the same rule over held-out normal pixels; 0.001 keeps the pixel threshold near the 99.9th
    # percentile that heatmap colours and defect_area have always used
    pixel_false_alarm_rate: Annotated[float, Check(0, 1, low_open=True, high_open=True)] = 0.001
    # pixel metrics on maps brought back to each image's own size against its mask as drawn (as
    # MVTec AD's official evaluation), or at the working size against resized masks ("model")
    resolution: Literal["original", "model"] = "model"
    # where the held-out normal scores behind the thresholds come from
    calibration: HoldOutCalibration | CrossFitCalibration = field(default_factory=HoldOutCalibration)


@dataclass(frozen=True)
class RunConfig:
    """Everything one training run needs; the resolved copy travels with every checkpoint."""

    model_name: str = "ae_ssim"
    model: Any = None  # the model's own config dataclass, chosen by model_name
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output_dir: str = "runs/default"

    def problems(self) -> list[tuple[str, str]]:
        if self.eval.calibration.kind == "cross_fit" and self.eval.map_standardization != "none":
            return [("eval.calibration", "cross_fit scores every normal image with a model that did not see it; "
                     "a map standardiser fitted on those scores is not supported: use hold_out, or "
                     "eval.map_standardization: none")]
        if self.eval.map_standardization != "none" and self.data.resize != "stretch":
            return [("eval.map_standardization", f"{self.eval.map_standardization!r} needs every map at one size "
                     f"and place, so data.resize must be 'stretch' (got {self.data.resize!r})")]
        return []


# --- conversion ---------------------------------------------------------------------------


def from_dict(cls: type, data: Any, where: str, source: str) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and value type."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where or 'config'}' must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = _key_names(set(data) - known)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(
            f"{source}: unknown key '{key}' (known keys here: {', '.join(sorted(known))})"
        )
    required = [
        f.name for f in dataclasses.fields(cls)
        if f.init and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    absent = [name for name in required if name not in data]
    if absent:
        key = f"{where}.{absent[0]}" if where else absent[0]
        raise ConfigError(f"{source}: '{where or 'config'}' needs the key '{key}'")
    values = {
        name: _coerce(hints[name], value, f"{where}.{name}" if where else name, source)
        for name, value in data.items()
    }
    built = cls(**values)
    for key, problem in getattr(built, "problems", lambda: [])():  # checks across keys
        raise ConfigError(f"{source}: '{where + '.' if where else ''}{key}' {problem}")
    return built


def _coerce(tp: Any, value: Any, where: str, source: str) -> Any:
    if typing.get_origin(tp) is typing.Annotated:  # a type with its checks: Annotated[int, AtLeast(1)]
        base, *checks = typing.get_args(tp)
        value = _coerce(base, value, where, source)
        for check in checks:
            if isinstance(check, Check) and value is not None and not check.holds(value):
                raise ConfigError(f"{source}: '{where}' must be {check.describe()}, got {value!r}")
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where, source)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        variants = [a for a in args if a is not type(None)]
        if all(dataclasses.is_dataclass(a) for a in variants) and all(_kind_of(a) for a in variants):
            return _choose_variant(variants, value, where, source)
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(arg, value, where, source)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{source}: '{where}' must be one of {choices}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: '{where}' must be a list, got {value!r}")
        if len(args) != 2 or args[1] is not Ellipsis:  # a fixed-length tuple, e.g. [height, width]
            if len(value) != len(args):
                raise ConfigError(f"{source}: '{where}' must be a list of {len(args)} items, got {value!r}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_coerce(t, v, f"{where}[{i}]", source) for i, (t, v) in pairs)
        item_type = args[0]
        return tuple(_coerce(item_type, v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-3" as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif tp is str:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    else:
        raise ConfigError(f"{source}: '{where}' has an unsupported type {tp!r}")
    raise ConfigError(f"{source}: '{where}' must be {tp.__name__}, got {value!r}")


def _kind_of(cls: type) -> str | None:
    """The value of a variant dataclass's `kind: Literal["..."]` field, which names the choice."""
    hint = typing.get_type_hints(cls).get("kind")
    if typing.get_origin(hint) is Literal and len(typing.get_args(hint)) == 1:
        return typing.get_args(hint)[0]
    return None


def _choose_variant(variants: list[type], value: Any, where: str, source: str) -> Any:
    """One of several exclusive choices, each a dataclass with its own keys, picked by `kind`.

    A key that belongs to another choice is an error naming both it and the chosen `kind`, so
    a config cannot combine settings that exclude each other.
    """
    kinds = {_kind_of(v): v for v in variants}
    if isinstance(value, tuple(variants)):
        return value
    if isinstance(value, str):  # `target: features` is short for `target: {kind: features}`
        value = {"kind": value}
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: '{where}' must be a mapping with a 'kind' "
                          f"({', '.join(map(repr, kinds))}), got {value!r}")
    kind = value.get("kind", next(iter(kinds)))
    if kind not in kinds:
        raise ConfigError(f"{source}: '{where}.kind' must be one of {', '.join(map(repr, kinds))}, got {kind!r}")
    chosen = kinds[kind]
    known = {f.name for f in dataclasses.fields(chosen) if f.init}
    stray = _key_names(set(value) - known)
    if stray:
        owners = [k for k, v in kinds.items() if stray[0] in {f.name for f in dataclasses.fields(v)}]
        belongs = f" (it belongs to kind {', '.join(map(repr, owners))})" if owners else ""
        raise ConfigError(
            f"{source}: '{where}.{stray[0]}' does not apply with '{where}.kind: {kind}'{belongs}; "
            f"keys for {kind!r}: {', '.join(sorted(known))}"
        )
    return from_dict(chosen, {**value, "kind": kind}, where, source)


def to_dict(obj: Any) -> Any:
    """Plain YAML-able structure (tuples become lists)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, list | tuple):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


# --- files and overrides ------------------------------------------------------------------


def parse_yaml(text: str, source: str) -> Any:
    """YAML text → Python values; anything PyYAML raises (not only YAMLError: a date like
    2001-13-01 is a ValueError, deep nesting a RecursionError) is a ConfigError naming the source."""
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, IndexError, OverflowError, RecursionError) as err:
        raise ConfigError(f"{source}: not valid YAML ({type(err).__name__}: {err})") from None


def _key_names(keys: Any) -> list[str]:
    """Keys of a user mapping, sorted as text: YAML keys may be None, booleans or numbers."""
    return sorted(str(k) for k in keys)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(f"{path}: not a text file in UTF-8 ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read ({err.strerror})") from None
    data = parse_yaml(text, str(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    return data


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`--model.lr 1e-4 --data.image_size=128` → nested dict; values are read as YAML."""
    tree: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--"):
            raise ConfigError(f"command line: expected --section.key, got {arg!r}")
        key, eq, raw = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"command line: --{key} needs a value")
            raw = args[i + 1]
            i += 1
        i += 1
        try:
            value = parse_yaml(raw, f"command line --{key}")
        except ConfigError:
            value = raw  # not YAML: the text itself
        node = tree
        parts = key.replace("-", "_").split(".")
        for depth, part in enumerate(parts[:-1]):
            if isinstance(node.get(part), str):  # `--model.target features`, then `--model.target.jitter 2`
                node[part] = {"kind": node[part]}
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command line: --{key} conflicts with --{'.'.join(parts[: depth + 1])} given before")
        node[parts[-1]] = _combine(node.get(parts[-1]), value, key)
    return tree


def _combine(old: Any, new: Any, key: str) -> Any:
    """A later override of a key over what earlier ones set below it: the settings given first are kept.

    A string over a mapping names the kind of an exclusive choice (`--model.target.jitter 2
    --model.target features` is `target: {kind: features, jitter: 2}`, as in the other order), so
    a setting that does not belong to that kind is an error when the config is built, never dropped.
    """
    if not isinstance(old, dict) or not old:
        return new
    if isinstance(new, str):
        new = {"kind": new}
    if not isinstance(new, dict):
        raise ConfigError(f"command line: --{key} {new!r} conflicts with the --{key}.* overrides given before it")
    out = dict(old)
    for name, value in new.items():
        out[name] = _combine(out.get(name), value, f"{key}.{name}")
    return out


def merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """`update` over `base`, mapping by mapping; a mapping that picks another `kind` of an exclusive
    choice replaces the old one whole, since the old kind's settings do not apply to the new."""
    out = dict(base)
    for key, value in update.items():
        old = out.get(key)
        old_kind = old.get("kind") if isinstance(old, dict) else old if isinstance(old, str) else None
        if isinstance(value, dict) and "kind" in value and value["kind"] != old_kind:
            out[key] = value
        elif isinstance(value, dict) and isinstance(old, str) and "kind" not in value:
            out[key] = {"kind": old, **value}  # `target: features` then `--model.target.jitter 2`
        elif isinstance(value, dict) and isinstance(old, dict):
            out[key] = merge(old, value)
        else:
            out[key] = value
    return out


def build_config(raw: dict[str, Any], source: str) -> RunConfig:
    """A raw mapping (file merged with overrides) → RunConfig with the model's own dataclass."""
    raw = dict(raw)
    if "model_name" in raw:
        raise ConfigError(f"{source}: unknown key 'model_name' (the model is chosen by 'model.name')")
    model_section = raw.pop("model", None)
    if model_section is None:
        model_section = {}
    if not isinstance(model_section, dict):
        raise ConfigError(f"{source}: 'model' must be a mapping with at least 'name' (e.g. model: {{name: vq_e}}), "
                          f"got {model_section!r}")
    model_section = dict(model_section)
    name = model_section.pop("name", RunConfig.model_name)
    from defectscope.models import model_config_class  # the registry imports torch: only when a config is built

    try:
        config_cls = model_config_class(name)
    except (KeyError, TypeError) as err:
        message = err.args[0] if isinstance(err, KeyError) else f"unknown model {name!r}"
        raise ConfigError(f"{source}: 'model.name': {message}") from None
    model_cfg = from_dict(config_cls, model_section, "model", source)
    run = from_dict(RunConfig, raw, "", source)
    return dataclasses.replace(run, model_name=name, model=model_cfg)


def load_config(path: str | Path | None, overrides: list[str] | None = None) -> RunConfig:
    raw = read_yaml(path) if path else {}
    source = str(path) if path else "defaults"
    if overrides:
        raw = merge(raw, parse_overrides(overrides))
        source += " + command line"
    return build_config(raw, source)


def config_to_raw(cfg: RunConfig) -> dict[str, Any]:
    """The mapping build_config reads back: model settings under `model:` with their `name`."""
    raw = to_dict(cfg)
    raw["model"] = {"name": raw.pop("model_name"), **(raw["model"] or {})}
    return raw


def config_to_yaml(cfg: RunConfig) -> str:
    return yaml.safe_dump(config_to_raw(cfg), sort_keys=False)


def config_from_yaml(text: str, source: str) -> RunConfig:
    raw = parse_yaml(text, source)
    if raw is not None and not isinstance(raw, dict):
        raise ConfigError(f"{source}: the top level must be a mapping")
    return build_config(raw or {}, source)
