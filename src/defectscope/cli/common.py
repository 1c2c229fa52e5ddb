"""Pieces the verbs share: printing a results table, the --save-maps switch.

Torch-free at import: `defectscope.cli.main` imports every verb, also on a machine that only runs
an exported model; the engine is imported when a results table is printed.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

from defectscope.config import ConfigError, RunConfig
from defectscope.scoring.detection import FEATURE_RUNTIMES


def with_save_maps(cfg: RunConfig, save_maps: bool) -> RunConfig:
    """`--save-maps` is `--eval.save_maps true`, so the run folder's config says what was written."""
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, save_maps=True)) if save_maps else cfg


def print_results(results: dict[str, Any], output_dir: Path) -> None:
    from defectscope.engine.evaluate import results_markdown

    print(results_markdown(results))
    print(f"results: {output_dir / 'results.json'}  table: {output_dir / 'results.md'}")
    if results.get("maps_dir"):
        print(f"anomaly-map pictures: {results['maps_dir']}")


def add_false_alarm_rate(parser: argparse.ArgumentParser) -> None:
    """`--false-alarm-rate R`: thresholds for another stated rate, from the held-out scores the model keeps."""
    parser.add_argument("--false-alarm-rate", type=float, default=None, metavar="R",
                        help="flag at most this share of good parts (like the held-out ones): the threshold is set "
                             "again from the calibration's held-out scores, nothing is re-fitted (default: the "
                             "calibrated rate)")


def check_false_alarm_rate(rate: float | None) -> None:
    if rate is not None and not 0 < rate < 1:
        raise ConfigError(f"--false-alarm-rate must lie strictly between 0 and 1, got {rate:g}")


def add_feature_runtime(parser: argparse.ArgumentParser) -> None:
    """`--feature-runtime`: what computes a checkpoint's frozen backbone features while it scores."""
    parser.add_argument("--feature-runtime", choices=FEATURE_RUNTIMES, default="auto",
                        help="a checkpoint's frozen backbone (PatchCore, PaDiM, PVQAE on features) on the CPU: "
                             "auto (default) runs it in onnxruntime where that is installed (defectscope[export]; "
                             "2-4x faster than torch, scores equal to float rounding), else in torch")
