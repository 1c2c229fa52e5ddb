"""What the config loader refuses before it builds anything: YAML whose aliases multiply (a
"billion laughs"), aliases that refer to themselves, text too long for a config, and values so
large that repeating them in the message would bury it. Each is a ConfigError naming where the
text came from, in well under a second."""

from __future__ import annotations

import time

import pytest

from defectscope.config import MAX_YAML_BYTES, MAX_YAML_VALUES, ConfigError, build_config, load_config, parse_yaml
from defectscope.errors import SHOWN_LIMIT


def laughs(levels: int = 9, width: int = 9) -> str:
    """`a: &a [x, ...]`, `b: &b [*a, ...]`, ...: width**levels values from a few hundred bytes."""
    names = "abcdefghijklmnop"[:levels]
    lines = [f"{names[0]}: &{names[0]} [{', '.join(['x'] * width)}]"]
    lines += [f"{n}: &{n} [{', '.join([f'*{p}'] * width)}]" for p, n in zip(names, names[1:], strict=False)]
    return "\n".join(lines) + "\n"


def refused_quickly(call, match: str) -> ConfigError:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as err:
        call()
    assert time.perf_counter() - started < 1.0
    return err.value


def test_a_billion_laughs_file_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    assert len(path.read_bytes()) < 500
    error = refused_quickly(lambda: load_config(path), "billion laughs")
    assert str(error).startswith(f"{path}: refused: ") and str(MAX_YAML_VALUES) in str(error)


def test_a_billion_laughs_override_is_refused_not_taken_as_text():
    refused_quickly(lambda: load_config(None, ["--data.sources", laughs()]),
                    r"^command line --data.sources: refused: .*billion laughs")


def test_an_alias_inside_its_own_anchor_is_refused():
    refused_quickly(lambda: parse_yaml("a: &a [1, *a]", "loop.yaml"), "loop.yaml: refused: an alias refers to")


def test_anchors_that_stay_small_are_still_yaml():
    text = ("data:\n  sources:\n    - &s {layout: mtsd, root: /data/mtsd}\n    - {<<: *s, layout: folder}\n"
            "  split: &split {seed: 3}\n")
    cfg = build_config(parse_yaml(text, "anchors.yaml"), "anchors.yaml")
    assert [s.layout for s in cfg.data.sources] == ["mtsd", "folder"]
    assert {s.root for s in cfg.data.sources} == {"/data/mtsd"} and cfg.data.split.seed == 3
    assert parse_yaml(laughs(levels=4, width=9), "x")["d"][0][0][0] == ["x"] * 9  # 9**4 values: fine


def test_text_too_long_for_a_config_is_refused_before_parsing(tmp_path):
    path = tmp_path / "huge.yaml"
    path.write_text("# " + "x" * MAX_YAML_BYTES + "\n")
    refused_quickly(lambda: load_config(path), f"{path}: .* too long for a config")
    path.write_bytes(b"a: 1\n" * (MAX_YAML_BYTES))  # 5 MB: refused by its size, unread
    refused_quickly(lambda: load_config(path), f"{path}: .* bytes is too large for a config file")


@pytest.mark.parametrize(("raw", "key"), [
    ({"train": {"strategy": "x" * 10_000_000}}, "train.strategy"),
    ({"data": {"image_size": "x" * 10_000_000}}, "data.image_size"),
    ({"output_dir": "x" * 10_000_000}, "output_dir"),
    ({"data": {"sources": ["x" * 10_000_000]}}, "data.sources[0]"),
    ({"train": {"epochs": 10**5000}}, "train.epochs"),
    ({"train": {"lr": 10**5000}}, "train.lr"),
    ({"data": {"sources": [{"layout": "mtsd", "root": 10**5000}]}}, "data.sources[0].root"),
    ({"model": {"name": "y" * 10_000_000}}, "model.name"),
    ({"train": {"devices": [list(range(1_000_000))]}}, "train.devices"),
    ({"x" * 10_000_000: 1}, "unknown key"),
], ids=["literal", "int", "str", "source", "int-huge", "float-huge", "root-huge", "model-name", "devices", "key"])
def test_a_huge_value_is_named_not_repeated_whole(raw, key):
    error = refused_quickly(lambda: build_config(raw, "big.yaml"), "^big.yaml: ")
    message = str(error)
    assert key in message[:100] and len(message) < 600, message[:700]


def test_a_long_value_in_a_message_ends_in_an_ellipsis():
    with pytest.raises(ConfigError) as err:
        load_config(None, ["--train.strategy", "x" * 500])
    shown = str(err.value).rsplit("got ", 1)[1]
    assert shown.endswith("…") and len(shown) == SHOWN_LIMIT


def test_an_int_at_2_to_the_63_is_shown_whole():
    with pytest.raises(ConfigError, match=rf"'data.image_size' must be ≥ 1 and ≤ 8192, got {2**63}$"):
        load_config(None, ["--data.image_size", str(2**63)])
