"""Running a suite: one cell at a time, resumable, then results.json and results.md from all cells.

A cell trains into ``OUT/cells/<cell-id>/`` with engine.fit, is evaluated there with
engine.evaluate (which also writes what the report draws), is profiled, and is finished when
its ``cell.json`` exists: that file is written atomically and last. A rerun skips finished
cells and redoes a cell that has a folder but no cell.json (it was interrupted), so an
interrupted run loses at most the cell in progress.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import shutil
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from defectscope.benchmark.profile import (
    count_parameters,
    flops_per_image,
    folder_bytes,
    images_per_second,
    onnxruntime_images_per_second,
    peak_memory,
    reset_peak_memory,
)
from defectscope.benchmark.reported import METRICS, load_reported, select_series
from defectscope.benchmark.suite import (
    Cell,
    Suite,
    cell_config,
    expand_cells,
    model_label,
    reported_as,
    select_cells,
)
from defectscope.benchmark.table import results_markdown
from defectscope.config import ConfigError, config_from_yaml
from defectscope.data.config import AutoSize
from defectscope.engine.environment import git_commit
from defectscope.engine.files import json_default, write_text_atomic
from defectscope.errors import UserError

CELL_FORMAT = "defectscope-benchmark-cell/1"
RESULTS_FORMAT = "defectscope-benchmark/1"
CELL_JSON = "cell.json"


@dataclass
class SuiteRun:
    """What one invocation did."""

    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    pending: list[str] = field(default_factory=list)  # would run (dry run)
    stale: list[str] = field(default_factory=list)  # finished with a config that differs from the suite's now
    results: dict[str, Any] = field(default_factory=dict)


def cell_dir(output: Path, cell: Cell) -> Path:
    return output / "cells" / cell.id


def is_finished(output: Path, cell: Cell) -> bool:
    return (cell_dir(output, cell) / CELL_JSON).is_file()


def _json(value: Any) -> str:
    return json.dumps(_finite(value), indent=2, default=json_default)


def _finite(value: Any) -> Any:
    """NaN → None, so results.json is strict JSON that any tool reads."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def run_cell(suite: Suite, cell: Cell, output: Path) -> dict[str, Any]:
    """Train, evaluate and profile one cell; write its cell.json last and return it."""
    from defectscope.engine import run
    from defectscope.engine.gallery import GalleryPlan

    cfg = cell_config(suite, cell, output)
    directory = cell_dir(output, cell)
    if directory.exists():  # an interrupted attempt: start the cell again from nothing
        shutil.rmtree(directory)
    began = time.perf_counter()
    reset_peak_memory()
    fitted = run(cfg, gallery=GalleryPlan(per_end=suite.config.gallery_per_end))
    results, model, device = fitted.results, fitted.model, fitted.device
    cfg = fitted.config or cfg  # data.image_size: auto resolved
    prof = suite.config.profile
    speeds = {str(b): images_per_second(model, cfg.data.model_input_size, b, device, prof.warmup, prof.iterations)
              for b in prof.batch_sizes}
    onnx_speeds = None
    if prof.onnxruntime:
        from defectscope.engine import load_checkpoint
        from defectscope.export.onnx_graph import export_onnx

        graph = directory / "model.onnx"
        export_onnx(load_checkpoint(fitted.checkpoint), graph)
        onnx_speeds = {str(b): onnxruntime_images_per_second(graph, cfg.data.model_input_size, b, prof.warmup,
                                                             prof.iterations) for b in prof.batch_sizes}
    record = {
        "format": CELL_FORMAT,
        "cell": {
            "id": cell.id, "model": cell.model, "dataset": cell.dataset, "setting": cell.setting,
            "category": cell.category, "seed": cell.seed, "model_name": cfg.model_name,
            "config": str(suite.resolve(suite.config.models[cell.model].config)),
            "reported_as": reported_as(suite, cell.dataset),
        },
        "categories": results["categories"],
        "mean": results["mean"],
        "intervals": results.get("intervals", {}),
        "num_test_images": results["num_test_images"],
        "image_size": cfg.data.image_size,
        "train_steps": fitted.steps,
        "train_seconds": round(fitted.train_seconds, 2),
        "images_per_second": speeds,
        "onnxruntime_images_per_second": onnx_speeds,  # None unless profile.onnxruntime
        "profile": {"warmup": prof.warmup, "iterations": prof.iterations},
        "eval_images_per_second": results["images_per_second"],
        "parameters": count_parameters(model),
        "checkpoint_bytes": folder_bytes(Path(fitted.checkpoint) / "model.safetensors"),
        "flops_per_image": flops_per_image(model, cfg.data.model_input_size, device) if prof.flops else None,
        **peak_memory(),
        "calibration": results["calibration"],
        "environment": results["environment"],
        "wall_seconds": round(time.perf_counter() - began, 2),
    }
    write_text_atomic(directory / CELL_JSON, _json(record))
    return record


def collect_results(suite: Suite, output: Path) -> dict[str, Any]:
    """results.json's content, rebuilt from every finished cell.json under `output`."""
    cells = expand_cells(suite)
    records = []
    for cell in cells:
        path = cell_dir(output, cell) / CELL_JSON
        if path.is_file():
            records.append(json.loads(path.read_text()))
    cfg = suite.config
    wanted = list(cfg.reported) if cfg.reported is not None else list(cfg.models)
    papers = sorted(load_reported(suite.resolve(cfg.reported_dir)), key=lambda p: p.seed)
    reported = []
    for dataset in dict.fromkeys(reported_as(suite, d) for d in cfg.datasets):
        for metric in METRICS:
            for s in select_series(papers, wanted, dataset, metric):
                reported.append({
                    "header": s.header, "method": s.column.name, "model": s.column.model, "paper": s.paper.paper,
                    "short": s.paper.short, "file": s.paper.file, "table": s.table.id, "section": s.table.section,
                    "page": s.table.page, "setting": s.table.setting, "setup": s.table.setup,
                    "dataset": dataset, "metric": metric,
                    "values": {k: v.value for k, v in s.values.items()},
                    "printed": {k: v.printed for k, v in s.values.items()},
                })
    return {
        "format": RESULTS_FORMAT,
        "suite": suite.name,
        "suite_file": str(suite.path),
        "generated": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(),
        "models": [{"key": k, "label": model_label(suite, k), "config": m.config} for k, m in cfg.models.items()],
        "datasets": [{"key": k, "reported_as": reported_as(suite, k)} for k in cfg.datasets],
        "settings": list(cfg.settings),
        "seeds": list(cfg.seeds),
        "cells_total": len(cells),
        "pending": [c.id for c in cells if not (cell_dir(output, c) / CELL_JSON).is_file()],
        "cells": records,
        "reported": reported,
    }


def write_results(suite: Suite, output: Path) -> dict[str, Any]:
    results = collect_results(suite, output)
    output.mkdir(parents=True, exist_ok=True)
    write_text_atomic(output / "results.json", _json(results))
    write_text_atomic(output / "results.md", results_markdown(results))
    return results


def stale_cells(suite: Suite, output: Path, cells: list[Cell]) -> list[str]:
    """Finished cells whose stored config differs from what the suite would run now (output folder aside)."""
    stale = []
    for cell in cells:
        stored = cell_dir(output, cell) / "config.yaml"
        if is_finished(output, cell) and stored.is_file():
            now = cell_config(suite, cell, output)
            try:
                then = config_from_yaml(stored.read_text(), str(stored))
            except ConfigError:
                stale.append(cell.id)
                continue
            if isinstance(now.data.image_size, AutoSize):  # the stored config holds the size it resolved to
                from defectscope.engine.working_size import resolve_working_size  # torch: only when needed

                try:
                    now = resolve_working_size(now)[0]
                except UserError:  # its images are gone or unreadable: the cell cannot be checked, nor rerun as it was
                    stale.append(cell.id)
                    continue
            if dataclasses.replace(then, output_dir=now.output_dir) != now:
                stale.append(cell.id)
    return stale


def run_suite(
    suite: Suite,
    output: str | Path,
    only: list[str] | None = None,
    dry_run: bool = False,
    keep_going: bool = False,
    redo: bool = False,
    log: Callable[[str], None] = print,
) -> SuiteRun:
    """Run every selected, unfinished cell in order; results are rebuilt after each cell."""
    output = Path(output).resolve()  # the same cell configs (output_dir) whatever the working directory
    cells = select_cells(expand_cells(suite), only)
    run = SuiteRun()
    reported_dir = suite.resolve(suite.config.reported_dir)
    if suite.config.reported != () and not reported_dir.is_dir():
        log(f"note: no reported numbers at {reported_dir} (suite key reported_dir); tables show measured columns only")
    if not dry_run:
        output.mkdir(parents=True, exist_ok=True)
    for n, cell in enumerate(cells, 1):
        finished = is_finished(output, cell)
        if finished and not redo:
            run.skipped.append(cell.id)
            log(f"[{n}/{len(cells)}] {cell.id}: finished, skipped")
            continue
        if dry_run:
            run.pending.append(cell.id)
            log(f"[{n}/{len(cells)}] {cell.id}: would run -> {cell_dir(output, cell)}")
            continue
        log(f"[{n}/{len(cells)}] {cell.id}: running")
        try:
            record = run_cell(suite, cell, output)
        except Exception as err:  # noqa: BLE001 - with keep_going, one bad cell must not stop the suite
            if not keep_going:
                raise
            run.failed[cell.id] = f"{type(err).__name__}: {err}"
            directory = cell_dir(output, cell)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "error.txt").write_text(traceback.format_exc())
            log(f"[{n}/{len(cells)}] {cell.id}: FAILED ({run.failed[cell.id]}); will be retried on the next run")
            continue
        run.ran.append(cell.id)
        mean = record["mean"]
        log(f"[{n}/{len(cells)}] {cell.id}: done in {record['wall_seconds']:.0f} s; image AUROC "
            f"{mean.get('image_auroc', float('nan')):.3f}, pixel AUROC {mean.get('pixel_auroc', float('nan')):.3f}")
        write_results(suite, output)
    run.stale = stale_cells(suite, output, [c for c in cells if c.id in run.skipped])
    if not dry_run:
        run.results = write_results(suite, output)
    return run
