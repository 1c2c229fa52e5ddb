"""YAML files and dotted command-line overrides mapped onto frozen dataclasses.

One path for every setting: defaults live in the dataclasses, a YAML file holds only the
differences, and `--section.key value` on the command line overrides both. Unknown keys and
values of the wrong type are errors that name the key and the file.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml

from defectscope.checks import (
    MAX_COUNT,
    Check,
    Epochs,
    LearningRate,
    PathText,
    PositiveSteps,
    Steps,
    Text,
    Weight,
    Within,
)
from defectscope.data.config import AutoSize, DataConfig, Seed
from defectscope.errors import UserError, shown


class ConfigError(UserError):
    """A configuration key or value is wrong; the message names it and where it came from."""


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


# Fabric's own precision names (lightning.fabric.plugins.precision.precision._PRECISION_INPUT_STR)
Precision = Literal["32-true", "64-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed", "transformer-engine",
                    "transformer-engine-float16"]
# the strategy names lightning Fabric accepts: "auto" and its STRATEGY_REGISTRY (lightning 2.6;
# tests/test_config_ranges.py checks each against the installed registry)
Strategy = Literal["auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_notebook", "ddp_find_unused_parameters_true", "dp",
                   "fsdp", "fsdp_cpu_offload", "deepspeed", "deepspeed_stage_1", "deepspeed_stage_1_offload",
                   "deepspeed_stage_2", "deepspeed_stage_2_offload", "deepspeed_stage_3", "deepspeed_stage_3_offload",
                   "deepspeed_stage_3_offload_nvme", "xla", "xla_fsdp", "single_xla", "single_tpu"]
# minutes of wall clock: 10⁶ is about two years
Minutes = Annotated[float, Within(0, 1_000_000)]
# a (resamples × test images) float64 matrix: 100 000 × 1000 images is 800 MB, and past 10 000 the
# interval's ends move less than their own rounding
Resamples = Annotated[int, Within(0, 100_000)]
# the longest text a config value may hold (a path's PATH_MAX); longer is a paste gone wrong
MAX_TEXT = 4096


@dataclass(frozen=True)
class TrainConfig:
    epochs: Epochs = 10
    max_steps: Steps = 0  # 0: no step limit (epochs decide)
    max_minutes: Minutes = 0.0  # 0: no time limit; otherwise stop after this wall-clock budget
    lr: LearningRate = 2e-4
    weight_decay: Weight = 0.0
    warmup_steps: Steps = 0
    lr_schedule: Literal["constant", "cosine"] = "constant"
    grad_clip: Weight = 0.0  # 0: off
    seed: Seed = 0  # also fixes the order of the training images in every epoch
    accelerator: Literal["auto", "cpu", "cuda", "gpu", "mps"] = "auto"
    devices: Annotated[str, DeviceSpec()] = "auto"  # "auto", a count ("2") or a list ("0,1")
    strategy: Strategy = "auto"  # "auto" picks DDP when more than one process runs
    precision: Precision = "32-true"  # e.g. "bf16-mixed" on a GPU
    checkpoint_every: Steps = 0  # steps between periodic checkpoints; 0: only the final one
    log_every: PositiveSteps = 10  # steps between log lines
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
    # more folds: each fold's model sees more images, closer to the shipped one
    folds: Annotated[int, Check(2, 50)] = 5
    # same_size: a fold's memory bank keeps as many patches as the shipped model's (its coreset share
    # raised by K/(K−1)), so a fold scores its unseen images against a bank as dense as the one that
    # ships; same_share: the configured share of fewer images, a sparser bank whose scores run high
    # and whose threshold flags fewer good parts than it promises. Models without a bank ignore it.
    fold_bank: Literal["same_size", "same_share"] = "same_size"
    # the frozen backbone's maps of each image are computed once and reused by every fold and the
    # shipped model, up to this many MiB held (EfficientNet-Lite0's three taps at 288 × 224: 0.34 MiB
    # an image, so 2 GiB holds about 6,000); images beyond it are computed again per fold; 0: no cache.
    # Not used where training draws random flips, jitter or tiles: no image would come twice.
    feature_cache_mib: Annotated[int, Check(0, 1 << 20)] = 2048


@dataclass(frozen=True)
class EvalConfig:
    save_maps: bool = False  # write anomaly maps (PNG overlays and .npy) into the run dir
    max_saved_maps: Annotated[int, Within(0, MAX_COUNT)] = 32
    pixel_metrics: bool = True
    # "position": z-score each map position by its mean and spread on the held-out normal
    # images, per class (engine/standardize.py); "none": the model's own map and score
    map_standardization: Literal["none", "position"] = "none"
    # 95 % intervals of the AUROCs: stratified bootstrap over test images; 0 turns them off
    bootstrap_resamples: Resamples = 1000
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
    output_dir: PathText = "runs/default"

    def problems(self) -> list[tuple[str, str]]:
        if self.eval.calibration.kind == "cross_fit" and self.eval.map_standardization != "none":
            return [("eval.calibration", "cross_fit scores every normal image with a model that did not see it; "
                     "a map standardiser fitted on those scores is not supported: use hold_out, or "
                     "eval.map_standardization: none")]
        if self.eval.map_standardization != "none" and self.data.resize != "stretch":
            return [("eval.map_standardization", f"{self.eval.map_standardization!r} needs every map at one size "
                     f"and place, so data.resize must be 'stretch' (got {self.data.resize!r})")]
        return self._smoothing_problems()

    def _smoothing_problems(self) -> list[tuple[str, str]]:
        """The smoothing kernel (±4σ, layers/scoring.py) must fit the map it smooths, or padding it fails."""
        sigma = getattr(self.model, "smoothing_sigma", None)
        if not isinstance(sigma, float | int) or sigma <= 0:
            return []
        if isinstance(self.data.image_size, AutoSize):  # never with tiling (DataConfig.problems)
            return []  # checked again once the run has resolved the size from its images
        size = self.data.model_input_size
        h, w = (size, size) if isinstance(size, int) else size
        reference = getattr(self.model, "sigma_reference_size", None)  # σ given at this size, scaled to the map
        scaled = sigma * max(h, w) / reference if reference else sigma
        radius = int(4 * scaled + 0.5)
        if radius < min(h, w):
            return []
        at = f" at {reference} px, {scaled:g} px on the map" if reference else " px"
        return [("model.smoothing_sigma", f"{sigma:g}{at} makes a kernel of ±{radius} px, which does not fit "
                 f"the {h}×{w} px map the model gives (data.image_size, or data.tiling.tile); at most "
                 f"{(min(h, w) - 0.5) / 4 * (reference / max(h, w) if reference else 1):.4g}")]


# --- conversion ---------------------------------------------------------------------------


def from_dict(cls: type, data: Any, where: str, source: str) -> Any:
    """Build dataclass `cls` from a mapping, checking every key and value type."""
    if isinstance(data, cls):
        return data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where or 'config'}' must be a mapping, got {shown(data)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    known = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = _key_names(set(data) - known)
    if unknown:
        key = f"{where}.{unknown[0]}" if where else unknown[0]
        raise ConfigError(
            f"{source}: unknown key {shown(key)} (known keys here: {', '.join(sorted(known))})"
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
        for check in checks:
            if isinstance(check, Text) and (problem := check.problem(value)) is not None:
                raise ConfigError(f"{source}: '{where}' {problem}, got {shown(value)}")
        value = _coerce(base, value, where, source)
        for check in checks:
            if isinstance(check, Check) and value is not None and not check.holds(value):
                raise ConfigError(f"{source}: '{where}' must be {check.describe()}, got {shown(value)}")
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
        choices = [a for a in variants if dataclasses.is_dataclass(a) and _kind_of(a)]
        if choices and isinstance(value, str | dict):  # `image_size: auto` beside plain sizes
            kind = value if isinstance(value, str) else value.get("kind", _kind_of(choices[0]))
            named = [c for c in choices if _kind_of(c) == kind]
            if not named:
                others = ", ".join(_described(a) for a in variants if a not in choices)
                raise ConfigError(f"{source}: '{where}' must be {others} or one of "
                                  f"{', '.join(repr(_kind_of(c)) for c in choices)}, got {shown(value)}")
            return _choose_variant(named, value, where, source)
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
            raise ConfigError(f"{source}: '{where}' must be one of {choices}, got {shown(value)}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{source}: '{where}' must be a list, got {shown(value)}")
        if len(args) != 2 or args[1] is not Ellipsis:  # a fixed-length tuple, e.g. [height, width]
            if len(value) != len(args):
                raise ConfigError(f"{source}: '{where}' must be a list of {len(args)} items, got {shown(value)}")
            pairs = enumerate(zip(args, value, strict=True))
            return tuple(_coerce(t, v, f"{where}[{i}]", source) for i, (t, v) in pairs)
        item_type = args[0]
        return tuple(_coerce(item_type, v, f"{where}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: '{where}' must be a mapping, got {shown(value)}")
        return dict(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, int | float | str) and not isinstance(value, bool):
            try:  # a str: YAML 1.1 reads "1e-3" as a string
                return float(value)
            except (ValueError, OverflowError):  # OverflowError: an int past 1.8e308
                pass
    elif tp is str:
        if isinstance(value, str) and len(value) > MAX_TEXT:
            raise ConfigError(f"{source}: '{where}' is {len(value)} characters long; at most {MAX_TEXT}")
        if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
            pass  # not text anyone meant: refused below (and str() of 4300+ digits raises)
        elif isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
    else:
        raise ConfigError(f"{source}: '{where}' has an unsupported type {tp!r}")
    raise ConfigError(f"{source}: '{where}' must be {tp.__name__}, got {shown(value)}")


def _described(tp: Any) -> str:
    """A type as a config's reader knows it: `a number`, `a list`."""
    base = typing.get_args(tp)[0] if typing.get_origin(tp) is typing.Annotated else tp
    if base in (int, float):
        return "a number"
    return "a list" if typing.get_origin(base) is tuple else getattr(base, "__name__", str(base))


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
                          f"({', '.join(map(repr, kinds))}), got {shown(value)}")
    kind = value.get("kind", next(iter(kinds)))
    if not isinstance(kind, str) or kind not in kinds:  # a list or mapping is unhashable
        raise ConfigError(f"{source}: '{where}.kind' must be one of {', '.join(map(repr, kinds))}, got {shown(kind)}")
    chosen = kinds[kind]
    known = {f.name for f in dataclasses.fields(chosen) if f.init}
    stray = _key_names(set(value) - known)
    if stray:
        owners = [k for k, v in kinds.items() if stray[0] in {f.name for f in dataclasses.fields(v)}]
        belongs = f" (it belongs to kind {', '.join(map(repr, owners))})" if owners else ""
        raise ConfigError(
            f"{source}: '{where}.{shown(stray[0])[1:-1]}' does not apply with '{where}.kind: {kind}'{belongs}; "
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


# A config is a few hundred values. Anchors and aliases (`a: &a [...]`, `b: [*a, *a]`) are
# YAML's own way to repeat a part and stay allowed, but each alias stands for a whole copy of
# what it names, and nested ones multiply: nine levels of nine make 400 million values from 400
# bytes (a "billion laughs"), which the loader would walk for minutes until memory runs out.
# So the document is measured as its aliases expand before anything is built from it.
MAX_YAML_VALUES = 100_000
# the most text read as one config (a file, or a checkpoint's stored config): far above any real
# one (the largest here is a few KB), and parsed in well under a second
MAX_YAML_BYTES = 1 << 20


class _YAMLTooLarge(Exception):
    """A YAML document whose aliases expand past MAX_YAML_VALUES, or refer to themselves."""


class YAMLRefused(ConfigError):
    """YAML text refused unread (too long, or aliases that expand too far): never taken as plain text."""


def _expanded_size(root: yaml.Node) -> int:
    """How many values the document holds with every alias expanded; a node shared by aliases is
    counted once per use but measured once, so the count takes time linear in the text."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _YAMLTooLarge("an alias refers to the value that contains it, which has no end")
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            total += sum(size(child) for child in node.value)
        elif isinstance(node, yaml.MappingNode):
            total += sum(size(k) + size(v) for k, v in node.value)
        open_nodes.discard(key)
        if total > MAX_YAML_VALUES:
            raise _YAMLTooLarge(f"with its aliases (*name) expanded it holds more than {MAX_YAML_VALUES} values "
                                "(nested anchors that repeat each other: a 'billion laughs'); a config needs "
                                "a few hundred")
        sizes[key] = total
        return total

    return size(root)


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's SafeLoader that measures the composed document before building Python values from it."""

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        if node is not None:
            _expanded_size(node)
        return node


def parse_yaml(text: str, source: str) -> Any:
    """YAML text → Python values; anything PyYAML raises (not only YAMLError: a date like
    2001-13-01 is a ValueError, deep nesting a RecursionError) is a ConfigError naming the source,
    and so is a document too long, or one whose aliases expand to too many values."""
    if len(text) > MAX_YAML_BYTES:
        raise YAMLRefused(f"{source}: {len(text)} characters is too long for a config (at most {MAX_YAML_BYTES})")
    loader = None
    try:
        loader = _BoundedLoader(text)  # what yaml.safe_load does, with the measure in between
        return loader.get_single_data()
    except _YAMLTooLarge as err:
        raise YAMLRefused(f"{source}: refused: {err}") from None
    except (yaml.YAMLError, ValueError, TypeError, IndexError, OverflowError, RecursionError) as err:
        problem = str(err) if len(str(err)) <= 400 else str(err)[:399] + "…"  # PyYAML quotes the text it read
        raise ConfigError(f"{source}: not valid YAML ({type(err).__name__}: {problem})") from None
    finally:
        if loader is not None:
            loader.dispose()


def _key_names(keys: Any) -> list[str]:
    """Keys of a user mapping, sorted as text: YAML keys may be None, booleans or numbers."""
    return sorted(str(k) for k in keys)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        if path.stat().st_size > 4 * MAX_YAML_BYTES:  # not read whole: UTF-8 takes at most 4 bytes a character
            raise ConfigError(f"{path}: {path.stat().st_size} bytes is too large for a config file "
                              f"(at most {MAX_YAML_BYTES} characters)")
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
            raise ConfigError(f"command line: expected --section.key, got {shown(arg)}")
        key, eq, raw = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args):
                raise ConfigError(f"command line: --{key} needs a value")
            raw = args[i + 1]
            i += 1
        i += 1
        try:
            value = parse_yaml(raw, f"command line --{key}")
        except YAMLRefused:
            raise
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
        raise ConfigError(f"command line: --{key} {shown(new)} conflicts with the --{key}.* overrides given before it")
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
                          f"got {shown(model_section)}")
    model_section = dict(model_section)
    name = model_section.pop("name", RunConfig.model_name)
    from defectscope.models import MODELS, model_config_class  # the registry imports torch: only when a config is built

    try:
        config_cls = model_config_class(name)
    except (KeyError, TypeError):
        raise ConfigError(f"{source}: 'model.name': unknown model {shown(name)} "
                          f"(known: {', '.join(sorted(MODELS))})") from None
    model_cfg = from_dict(config_cls, model_section, "model", source)
    run = dataclasses.replace(from_dict(RunConfig, raw, "", source), model_name=name, model=model_cfg)
    for key, problem in run.problems():  # again, now with the model's settings beside the data's
        raise ConfigError(f"{source}: '{key}' {problem}")
    return run


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
