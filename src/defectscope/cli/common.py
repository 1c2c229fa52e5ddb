"""Pieces the verbs share: printing a results table, picking a device, the --save-maps switch."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import torch

from defectscope.config import RunConfig
from defectscope.engine.evaluate import results_markdown


def pick_device(name: str = "auto") -> torch.device:
    if name in ("auto", "gpu", "cuda"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if name != "auto":
            print("defectscope: no CUDA device found; using the CPU", file=sys.stderr)
    if name == "mps" and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def with_save_maps(cfg: RunConfig, save_maps: bool) -> RunConfig:
    """`--save-maps` is `--eval.save_maps true`, so the run folder's config says what was written."""
    return dataclasses.replace(cfg, eval=dataclasses.replace(cfg.eval, save_maps=True)) if save_maps else cfg


def print_results(results: dict[str, Any], output_dir: Path) -> None:
    print(results_markdown(results))
    print(f"results: {output_dir / 'results.json'}  table: {output_dir / 'results.md'}")
    if results.get("maps_dir"):
        print(f"anomaly-map pictures: {results['maps_dir']}")
