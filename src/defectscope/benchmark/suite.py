"""Benchmark suites: which models, datasets, settings and seeds to run, and the cells they make.

A suite is a YAML file mapped onto the frozen dataclasses below with the same strict loader as
run configs (an unknown key is an error naming it and the file). Relative paths in a suite
(model configs, data roots, the reported-numbers folder) resolve against the suite file's
folder, so a suite runs the same from any working directory.

One cell = (model, dataset, setting, category, seed): `multi_class` trains one model over all
categories of a dataset (category "all"); `single_class` trains one model per category.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from defectscope.config import (
    ConfigError,
    RunConfig,
    build_config,
    from_dict,
    merge,
    read_yaml,
    to_dict,
)
from defectscope.data.config import SourceConfig

Setting = Literal["multi_class", "single_class"]
ALL_CATEGORIES = "all"


@dataclass(frozen=True)
class ModelEntry:
    """One column of the results: a run config plus overrides."""

    config: str  # a run config YAML, e.g. ../configs/ae_ssim/mtsd.yaml
    overrides: dict[str, Any] = field(default_factory=dict)  # nested, like the config file
    label: str = ""  # column header; the entry's key when empty


@dataclass(frozen=True)
class DatasetEntry:
    """Data sources (as in a config's data.sources) and how the papers name the dataset."""

    sources: tuple[SourceConfig, ...]
    reported_as: str = ""  # dataset key in the reported tables (mvtec, btad, mtsd); the entry's key when empty
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfileConfig:
    """Speed measurements: few iterations keep the smoke suite fast, more make numbers stable."""

    batch_sizes: tuple[int, ...] = (1, 32)
    warmup: int = 2
    iterations: int = 10
    flops: bool = True
    # also export each cell's checkpoint (defectscope export) and time it in onnxruntime on the CPU,
    # beside torch in the same run (needs the `export` extra; adds one export per cell)
    onnxruntime: bool = False


@dataclass(frozen=True)
class SuiteConfig:
    name: str = ""
    description: str = ""
    models: dict[str, ModelEntry] = field(default_factory=dict)
    datasets: dict[str, DatasetEntry] = field(default_factory=dict)
    settings: tuple[Setting, ...] = ("multi_class",)
    seeds: tuple[int, ...] = (0,)
    overrides: dict[str, Any] = field(default_factory=dict)  # every cell; dataset, then model overrides go on top
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    reported: tuple[str, ...] | None = None  # reported columns to show (model or method names); None: suite's models
    reported_dir: str = "reported"  # benchmarks/reported beside the shipped suites
    gallery_per_end: int = 4  # most and least anomalous test images kept per cell for the report


@dataclass(frozen=True)
class Cell:
    """One training + evaluation of the benchmark grid."""

    model: str
    dataset: str
    setting: Setting
    category: str  # "all" for multi_class
    seed: int

    @property
    def id(self) -> str:
        parts = (self.model, self.dataset, self.setting, self.category, f"s{self.seed}")
        return ".".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) for p in parts)


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its settings plus where it came from (to resolve relative paths)."""

    config: SuiteConfig
    path: Path
    # the command line's --section.key values: they go on top of every layer of the suite file
    command_line: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.config.name or self.path.stem

    def resolve(self, path: str) -> Path:
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.path.parent / p).resolve()


def load_suite(path: str | Path, overrides: dict[str, Any] | None = None) -> Suite:
    """Read and check a suite file; `overrides` (from the command line) win over the file's own."""
    path = Path(path)
    source = str(path)
    raw = read_yaml(path)
    raw["models"] = _entries(ModelEntry, raw.get("models"), "models", source)
    raw["datasets"] = _entries(DatasetEntry, raw.get("datasets"), "datasets", source)
    config = from_dict(SuiteConfig, raw, "", source)
    if not config.models:
        raise ConfigError(f"{source}: 'models' names no model")
    if not config.datasets:
        raise ConfigError(f"{source}: 'datasets' names no dataset")
    if not config.seeds:
        raise ConfigError(f"{source}: 'seeds' is empty")
    suite = Suite(config, path.resolve(), overrides or {})
    for cell in expand_cells(suite):  # every cell's config is checked before anything runs
        cell_config(suite, cell, Path("."))
    return suite


def _entries(cls: type, data: Any, where: str, source: str) -> dict[str, Any]:
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: '{where}' must be a mapping of name -> entry, got {data!r}")
    return {str(key): from_dict(cls, value, f"{where}.{key}", source) for key, value in data.items()}


def category_name(source: SourceConfig) -> str:
    """The category a source contributes (mvtec/btad: its folder; mtsd: "mtsd"; folder: its name)."""
    if source.layout == "mtsd":
        return "mtsd"
    return source.category or Path(source.root).name


def expand_cells(suite: Suite) -> list[Cell]:
    """Every cell of the grid, models outermost, in the suite's order."""
    cfg = suite.config
    cells = []
    for model in cfg.models:
        for dataset, entry in cfg.datasets.items():
            for setting in cfg.settings:
                categories = [ALL_CATEGORIES] if setting == "multi_class" else [category_name(s) for s in entry.sources]
                for category in categories:
                    for seed in cfg.seeds:
                        cells.append(Cell(model, dataset, setting, category, seed))
    return cells


def select_cells(cells: list[Cell], patterns: list[str] | None) -> list[Cell]:
    """Cells whose id matches any glob pattern (all cells when there is none)."""
    if not patterns:
        return cells
    return [c for c in cells if any(fnmatch.fnmatchcase(c.id, p) for p in patterns)]


def cell_sources(suite: Suite, cell: Cell) -> list[SourceConfig]:
    entry = suite.config.datasets[cell.dataset]
    sources = list(entry.sources)
    if cell.category != ALL_CATEGORIES:
        sources = [s for s in sources if category_name(s) == cell.category]
    return [dataclasses.replace(s, root=str(suite.resolve(s.root))) for s in sources]


def cell_config(suite: Suite, cell: Cell, output_root: Path) -> RunConfig:
    """The model's run config with suite, dataset, model and command-line overrides, this cell's data and seed."""
    cfg = suite.config
    model = cfg.models[cell.model]
    dataset = cfg.datasets[cell.dataset]
    config_path = suite.resolve(model.config)
    raw = read_yaml(config_path)
    for layer in (cfg.overrides, dataset.overrides, model.overrides, suite.command_line):
        raw = merge(raw, layer)
    raw = merge(raw, {
        "data": {"sources": [to_dict(s) for s in cell_sources(suite, cell)]},
        "train": {"seed": cell.seed},
        "output_dir": str(output_root / "cells" / cell.id),
    })
    return build_config(raw, f"{suite.path} (cell {cell.id}, model config {config_path})")


def reported_as(suite: Suite, dataset: str) -> str:
    return suite.config.datasets[dataset].reported_as or dataset


def model_label(suite: Suite, model: str) -> str:
    return suite.config.models[model].label or model
