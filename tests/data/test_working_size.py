"""`data.image_size: auto`: the working shape from the training images' shapes."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from defectscope.config import ConfigError, load_config
from defectscope.data.config import AutoSize
from defectscope.data.errors import DataError
from defectscope.data.sample import Record
from defectscope.data.working_size import median_aspect, resolve_auto, working_shape


def test_a_square_budget_of_256_squared_is_256_by_256():
    assert working_shape(1.0, 256 * 256, 32) == (256, 256)


def test_a_part_four_times_wider_than_tall_keeps_its_shape_at_the_same_budget():
    assert working_shape(0.25, 256 * 256, 32) == (128, 512)
    assert working_shape(4.0, 256 * 256, 32) == (512, 128)


@settings(max_examples=300, deadline=None)
@given(aspect=st.floats(1 / 16, 16), pixels=st.integers(4096, 4_000_000), multiple=st.sampled_from([1, 8, 16, 32]))
def test_sides_are_multiples_and_budget_and_aspect_hold_to_half_a_multiple(aspect, pixels, multiple):
    height, width = working_shape(aspect, pixels, multiple)
    assert height % multiple == 0 and width % multiple == 0 and height >= multiple and width >= multiple
    exact_h, exact_w = math.sqrt(pixels * aspect), math.sqrt(pixels / aspect)
    # each side rounds to its nearest multiple, unless that is below one multiple
    assert abs(height - exact_h) <= multiple / 2 or height == multiple
    assert abs(width - exact_w) <= multiple / 2 or width == multiple


@pytest.mark.parametrize("aspect", [0.0, -1.0, math.inf, math.nan])
def test_a_degenerate_aspect_ratio_is_refused(aspect):
    with pytest.raises(ValueError, match="aspect"):
        working_shape(aspect, 65536, 32)


def test_the_median_ignores_a_few_odd_images():
    sizes = [(400, 100)] * 9 + [(100, 4000)] * 2  # (width, height): nine wide parts, two odd tall ones
    assert median_aspect(sizes) == pytest.approx(0.25)


def _records(folder: Path, sizes: list[tuple[int, int]]) -> list[Record]:
    folder.mkdir(exist_ok=True)
    records = []
    for i, (width, height) in enumerate(sizes):
        path = folder / f"{i:03d}.png"
        Image.new("RGB", (width, height), (100, 100, 100)).save(path)
        records.append(Record(path, None, 0, "part", "good"))
    return records


def test_resolve_reads_the_images_shapes(tmp_path):
    records = _records(tmp_path / "good", [(300, 100), (310, 100), (290, 100)])  # about 1:3
    resolved = resolve_auto(AutoSize(pixels=12288, multiple=16), records, square=False)
    assert (resolved.height, resolved.width) == working_shape(100 / 300, 12288, 16) == (64, 192)
    assert resolved.images == 3 and not resolved.square
    assert "[64, 192]" in resolved.describe() and "3 training images" in resolved.describe()


def test_a_model_that_needs_squares_gets_the_square_of_the_budget(tmp_path):
    records = _records(tmp_path / "good", [(300, 100)])
    resolved = resolve_auto(AutoSize(), records, square=True)
    assert (resolved.height, resolved.width) == (256, 256) and resolved.square
    assert "square" in resolved.describe()


def test_an_unreadable_image_is_named_or_skipped(tmp_path):
    records = _records(tmp_path / "good", [(300, 100), (300, 100)])
    bad = tmp_path / "good" / "broken.png"
    bad.write_bytes(b"not an image")
    records.append(Record(bad, None, 0, "part", "good"))
    with pytest.raises(DataError, match="broken.png"):
        resolve_auto(AutoSize(pixels=12288, multiple=16), records, square=False)
    resolved = resolve_auto(AutoSize(pixels=12288, multiple=16), records, square=False, skip_bad=True)
    assert resolved.images == 2


def test_auto_in_a_config_and_its_mistakes():
    assert load_config(None, ["--data.image_size", "auto"]).data.image_size == AutoSize()
    cfg = load_config(None, ["--data.image_size", "{kind: auto, pixels: 40000, multiple: 16}"])
    assert cfg.data.image_size == AutoSize(pixels=40000, multiple=16)
    assert load_config(None, ["--data.image_size", "[200, 300]"]).data.image_size == (200, 300)
    with pytest.raises(ConfigError, match="'data.image_size' must be a number, a list or one of 'auto'"):
        load_config(None, ["--data.image_size", "automatic"])
    with pytest.raises(ConfigError, match="'data.image_size.pixel' does not apply"):
        load_config(None, ["--data.image_size", "{kind: auto, pixel: 3}"])
    with pytest.raises(ConfigError, match="'data.image_size.pixels' must be"):
        load_config(None, ["--data.image_size", "{kind: auto, pixels: 0}"])
    with pytest.raises(ConfigError, match="'data.image_size' auto spreads the pixel budget over whole images"):
        load_config(None, ["--data.image_size", "auto", "--data.tiling", "{kind: tiles, tile: 256, stride: 192}"])


def test_an_unresolved_size_cannot_build_a_model():
    cfg = load_config(None, ["--model.name", "padim", "--data.image_size", "auto"])
    with pytest.raises(ValueError, match="resolved from the training images"):
        _ = cfg.data.model_input_size
