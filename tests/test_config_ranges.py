"""Every number in the train, eval and data settings has a declared range; a value outside it is a
ConfigError naming the key and where it came from, before any work starts."""

from __future__ import annotations

import typing

import pytest

from defectscope.config import ConfigError, Strategy, load_config

BAD = [
    ("data.batch_size", "0"), ("data.batch_size", "-2"), ("data.eval_batch_size", "0"), ("data.num_workers", "-1"),
    ("data.image_size", "0"), ("data.validation_fraction", "1.0"), ("data.validation_fraction", "-0.1"),
    ("data.split.test_fraction", "1.5"), ("data.split.seed", "-1"), ("data.split.seed", str(2**32)),
    ("data.augment.brightness", "1.5"), ("data.augment.brightness", "-0.1"), ("data.augment.contrast", "2"),
    ("data.augment.saturation", ".nan"),
    ("train.lr", "0"), ("train.lr", "-1e-3"), ("train.lr", ".inf"), ("train.lr", ".nan"),
    ("train.log_every", "0"), ("train.max_steps", "-1"), ("train.epochs", "0"), ("train.checkpoint_every", "-1"),
    ("train.warmup_steps", "-1"), ("train.max_minutes", "-1"), ("train.max_minutes", ".inf"),
    ("train.weight_decay", "-0.1"), ("train.grad_clip", ".inf"), ("train.seed", "-1"), ("train.seed", str(2**32)),
    ("eval.max_saved_maps", "-1"),
    ("train.precision", "fp32"), ("train.precision", "32"), ("train.precision", "bf16"),
    ("train.devices", "0"), ("train.devices", "-1"), ("train.devices", "two"), ("train.devices", "0,0"),
    ("train.devices", "1.5"), ("train.devices", "0,,1"),
    # past what the code can run: each crashed or hung a run that validation had let through
    ("data.image_size", str(2**63)), ("data.image_size", "[64, 9000]"), ("data.num_workers", str(2**31)),
    ("data.num_workers", "257"), ("data.batch_size", str(2**31)), ("data.eval_batch_size", "1e9"),
    ("data.max_image_pixels", str(2**40)), ("data.max_image_pixels", "0"),
    ("train.epochs", str(2**63)), ("train.max_steps", str(2**31)), ("train.lr", "1e308"), ("train.lr", "11"),
    ("train.max_minutes", "1e308"), ("train.grad_clip", "1e308"), ("train.log_every", str(2**31)),
    ("eval.bootstrap_resamples", str(10**9)), ("eval.max_saved_maps", str(2**63)),
]

GOOD = [
    ("train.devices", "auto"), ("train.devices", "2"), ("train.devices", "'0,1'"), ("train.devices", "'1,'"),
    ("train.precision", "bf16-mixed"), ("train.seed", str(2**32 - 1)), ("train.max_steps", "0"),
    ("train.checkpoint_every", "0"), ("data.validation_fraction", "0"), ("data.augment.brightness", "1"),
    ("data.num_workers", "0"), ("train.lr", "1e-3"),
    ("data.num_workers", "256"), ("data.image_size", "8192"), ("train.max_steps", str(2**31 - 1)),
    ("train.strategy", "ddp"), ("train.strategy", "ddp_spawn"), ("train.strategy", "auto"),
]


@pytest.mark.parametrize(("key", "value"), BAD)
def test_a_value_outside_its_range_is_an_error_naming_the_key(key, value):
    with pytest.raises(ConfigError, match=f"'{key}' must be") as err:
        load_config(None, [f"--{key}", value])
    assert "command line" in str(err.value)


@pytest.mark.parametrize(("key", "value"), GOOD)
def test_values_at_the_edges_of_their_ranges_are_accepted(key, value):
    load_config(None, [f"--{key}", value])


def test_a_bad_value_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("train:\n  seed: 4294967296\n")
    with pytest.raises(ConfigError, match=rf"{path}: 'train.seed' must be ≥ 0 and ≤ 4294967295, got 4294967296"):
        load_config(path)


def test_the_devices_message_says_what_is_allowed():
    with pytest.raises(ConfigError, match="'auto', a positive device count such as 2, or a comma list"):
        load_config(None, ["--train.devices", "-1"])


def test_an_unknown_strategy_is_an_error_listing_fabrics_names():
    with pytest.raises(ConfigError, match=r"'train.strategy' must be one of 'auto', 'ddp', .*got 'nope'"):
        load_config(None, ["--train.strategy", "nope"])


def test_every_strategy_the_config_takes_is_one_fabric_accepts():
    """train.strategy lists Fabric's names by hand (config.py imports no lightning): each must be registered."""
    pytest.importorskip("lightning")
    from lightning.fabric.strategies import STRATEGY_REGISTRY

    names = set(typing.get_args(Strategy))
    assert names - {"auto"} <= set(STRATEGY_REGISTRY.available_strategies())


def test_a_tile_past_the_largest_side_is_an_error_naming_the_key():
    with pytest.raises(ConfigError, match=r"'data.tiling.tile' must be ≥ 1 and ≤ 8192, got 2147483648"):
        load_config(None, ["--data.tiling", f"{{kind: tiles, tile: {2**31}}}"])
