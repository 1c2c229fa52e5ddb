"""The image suffixes and pixel caps live in data/limits.py; every reader takes its default from there."""

from __future__ import annotations

from defectscope.cli.main import build_parser
from defectscope.data.config import DataConfig
from defectscope.data.image_io import _SUFFIX_FORMATS
from defectscope.data.limits import (
    IMAGE_SUFFIXES,
    MAX_IMAGE_PIXELS,
    PREDICT_MAX_IMAGE_PIXELS,
    SERVE_MAX_IMAGE_PIXELS,
)
from defectscope.serve.settings import ServeSettings


def test_every_image_suffix_has_a_decoder():
    assert set(_SUFFIX_FORMATS) == IMAGE_SUFFIXES


def test_each_reader_defaults_to_its_cap_and_the_caps_keep_their_order():
    """Network uploads < a batch of local files < one dataset image at a time (the reasons: limits.py)."""
    assert SERVE_MAX_IMAGE_PIXELS < PREDICT_MAX_IMAGE_PIXELS < MAX_IMAGE_PIXELS
    assert DataConfig().max_image_pixels == MAX_IMAGE_PIXELS
    assert ServeSettings().max_image_pixels == SERVE_MAX_IMAGE_PIXELS == 4096 * 4096
    parser = build_parser()
    for verb, cap in (("predict", PREDICT_MAX_IMAGE_PIXELS), ("serve", SERVE_MAX_IMAGE_PIXELS)):
        args, _ = parser.parse_known_args([verb, "model.onnx", *(["x.png"] if verb == "predict" else [])])
        assert args.max_image_pixels == cap
