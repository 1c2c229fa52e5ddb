"""Resolves `data.image_size: auto` once per run, before anything is built from the config."""

from __future__ import annotations

import dataclasses

from defectscope.config import RunConfig, build_config, config_to_raw
from defectscope.data import build_records
from defectscope.data.config import AutoSize
from defectscope.data.working_size import ResolvedSize, resolve_auto
from defectscope.models import model_class


def resolve_working_size(cfg: RunConfig) -> tuple[RunConfig, ResolvedSize | None]:
    """`cfg` with `auto` replaced by the [height, width] its good training images call for.

    Every later step (datasets, model, checkpoint, export, predict) sees a plain size, so a
    trained model always scores at the size it was fitted at. The config is built again, so the
    checks that need the size (the smoothing kernel must fit the map) run on the resolved one.
    A config without `auto` comes back unchanged, with None.
    """
    auto = cfg.data.image_size
    if not isinstance(auto, AutoSize):
        return cfg, None
    split = build_records(cfg.data)
    square = not model_class(cfg.model_name).rectangular  # auto never comes with tiles (DataConfig.problems)
    resolved = resolve_auto(auto, [*split.train, *split.validation], square=square, skip_bad=cfg.data.skip_bad)
    size = resolved.height if resolved.height == resolved.width else (resolved.height, resolved.width)
    raw = config_to_raw(dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=size)))
    return build_config(raw, resolved.describe()), resolved
