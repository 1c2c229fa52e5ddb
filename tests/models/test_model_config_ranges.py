"""Every number a model config holds declares its range, so a bad value fails at load naming the key."""

import dataclasses
import types
import typing

import pytest

from defectscope.checks import Check
from defectscope.config import ConfigError, load_config
from defectscope.models import MODELS


def unchecked_numbers(cls: type, where: str) -> list[str]:
    """Dotted keys of int/float fields (or tuples of them) without a `Check`, through nested choices."""
    found = []
    for f in dataclasses.fields(cls):
        tp = typing.get_type_hints(cls, include_extras=True)[f.name]
        found += _unchecked(tp, f"{where}.{f.name}")
    return found


def _unchecked(tp: object, key: str) -> list[str]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is typing.Annotated:
        base, *marks = args
        if base in (int, float):
            return [] if any(isinstance(m, Check) for m in marks) else [key]
        return _unchecked(base, key)
    if tp in (int, float):
        return [key]
    if origin is tuple:
        return _unchecked(args[0], f"{key}[]")
    if origin in (typing.Union, types.UnionType):
        return [k for a in args if a is not type(None) for k in _unchecked(a, key)]
    if dataclasses.is_dataclass(tp):
        return unchecked_numbers(tp, key)
    return []


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_number_in_a_model_config_declares_its_range(name):
    assert unchecked_numbers(MODELS[name][1], "model") == []


def test_the_walk_finds_an_unchecked_number_in_a_nested_choice():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        kind: typing.Literal["a"] = "a"
        size: int = 3

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner | None = None
        widths: tuple[float, ...] = ()

    assert unchecked_numbers(Outer, "model") == ["model.inner.size", "model.widths[]"]


@pytest.mark.parametrize("name, key, value", [
    ("vq_e", "num_codes", "0"), ("vq_e", "ema_decay", "1.5"), ("ae_ssim", "base_channels", "-8"),
    ("ae_ssim", "smoothing_sigma", "-1"), ("vitae", "decoder_channels", "[512, 0]"), ("vitae", "dropout", "1"),
    ("patchcore", "coreset_ratio", "0"), ("patchcore", "num_neighbors", "0"), ("padim", "n_features", "0"),
    ("padim", "backbone.taps", "[-1]"),
])
def test_a_number_out_of_range_fails_at_load_naming_the_key(name, key, value):
    with pytest.raises(ConfigError, match=rf"'model\.{key}(\[\d\])?' must be"):
        load_config(None, ["--model.name", name, f"--model.{key}", value])
