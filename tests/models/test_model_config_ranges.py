"""Every number a config holds declares its range, both ends, so a bad value fails at load naming the key:
a value past what the code can run (a width of 2**31, a σ of 1e308) is refused before any work starts."""

import dataclasses
import math
import types
import typing

import pytest
import torch

from defectscope.checks import Check
from defectscope.config import ConfigError, RunConfig, load_config
from defectscope.layers.scoring import gaussian_smooth
from defectscope.models import MODELS, create_model


def unchecked_numbers(cls: type, where: str) -> list[str]:
    """Dotted keys of int/float fields (or tuples of them) without a `Check` that bounds them on both
    sides, through nested choices."""
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
            return [] if any(isinstance(m, Check) and _bounded(m) for m in marks) else [key]
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


def _bounded(check: Check) -> bool:
    return check.low is not None and check.high is not None and math.isfinite(check.high)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_number_in_a_model_config_declares_its_range(name):
    assert unchecked_numbers(MODELS[name][1], "model") == []


def test_every_number_in_the_run_config_declares_its_range():
    assert unchecked_numbers(RunConfig, "") == []


def test_the_walk_finds_an_unchecked_number_in_a_nested_choice():
    @dataclasses.dataclass(frozen=True)
    class Inner:
        kind: typing.Literal["a"] = "a"
        size: int = 3
        low_only: typing.Annotated[int, Check(low=1)] = 1

    @dataclasses.dataclass(frozen=True)
    class Outer:
        inner: Inner | None = None
        widths: tuple[float, ...] = ()

    assert unchecked_numbers(Outer, "model") == ["model.inner.size", "model.inner.low_only", "model.widths[]"]


@pytest.mark.parametrize("name, key, value", [
    ("vq_e", "num_codes", "0"), ("vq_e", "ema_decay", "1.5"), ("ae_ssim", "base_channels", "-8"),
    ("ae_ssim", "smoothing_sigma", "-1"), ("vitae", "decoder_channels", "[512, 0]"), ("vitae", "dropout", "1"),
    ("patchcore", "coreset_ratio", "0"), ("patchcore", "num_neighbors", "0"), ("padim", "n_features", "0"),
    ("padim", "backbone.taps", "[-1]"),
    # past what the code can run: validation let each through, then training crashed
    ("vq_e", "code_dim", str(2**31)), ("pvqae", "code_dim", str(2**31)), ("vq_e", "smoothing_sigma", "1e308"),
    ("ae_ssim", "latent_dim", str(2**63)), ("vitae", "mlp_ratio", "1e6"), ("pvqae", "num_codes", str(2**40)),
    ("patchcore", "seed", str(2**64)), ("fader", "channels", f"[32, {2**31}]"), ("pvqae", "tau_start", "1e308"),
])
def test_a_number_out_of_range_fails_at_load_naming_the_key(name, key, value):
    with pytest.raises(ConfigError, match=rf"'model\.{key}(\[\d\])?' must be"):
        load_config(None, ["--model.name", name, f"--model.{key}", value])


@pytest.mark.parametrize(("name", "size", "sigma"), [
    ("vq_e", "64", "16"), ("patchcore", "[32, 128]", "8"), ("ae_ssim", "64", "255"), ("mean_image", "64", "64"),
])
def test_a_smoothing_kernel_wider_than_the_map_fails_at_load(name, size, sigma):
    """layers/scoring.py pads the map by the kernel's ±4σ, which must stay below the map's side."""
    with pytest.raises(ConfigError, match=r"'model\.smoothing_sigma' .* does not fit the \d+×\d+ px map"):
        load_config(None, ["--model.name", name, "--data.image_size", size, "--model.smoothing_sigma", sigma])


@pytest.mark.parametrize(("name", "size", "sigma"), [
    ("vq_e", "64", "15.8"), ("vq_e", "32", "4"), ("mean_image", "64", "63"), ("mean_image", "32", "4"),
    ("mean_image", "[64, 256]", "15.8"), ("vq_e", "64", "0"),
])
def test_a_smoothing_kernel_that_fits_the_map_is_accepted_and_runs(name, size, sigma):
    cfg = load_config(None, ["--model.name", name, "--data.image_size", size, "--model.smoothing_sigma", sigma])
    size = cfg.data.model_input_size
    h, w = (size, size) if isinstance(size, int) else size
    model = create_model(name, cfg.model, size)
    pixels = getattr(model, "sigma", cfg.model.smoothing_sigma)  # mean_image scales σ with the image
    assert gaussian_smooth(torch.rand(1, h, w), pixels).shape == (1, h, w)
