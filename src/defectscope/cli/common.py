"""Pieces the verbs share: printing a results table, the --save-maps switch.

Torch-free at import: `defectscope.cli.main` imports every verb, also on a machine that only runs
an exported model; the engine is imported when a results table is printed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from defectscope.config import RunConfig


def with_save_maps(cfg: RunConfig, save_maps: bool) -> RunConfig:
    """`--save-maps` is `--eval.save_maps true`, so the run folder's config says what was written."""
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, save_maps=True)) if save_maps else cfg


def print_results(results: dict[str, Any], output_dir: Path) -> None:
    from defectscope.engine.evaluate import results_markdown

    print(results_markdown(results))
    print(f"results: {output_dir / 'results.json'}  table: {output_dir / 'results.md'}")
    if results.get("maps_dir"):
        print(f"anomaly-map pictures: {results['maps_dir']}")
