"""`defectscope report RUN_DIR`: one self-contained HTML file from a run or a benchmark folder.

Everything is read from files the engine wrote (results.json, curves.json, scores.csv,
gallery/, train_log.jsonl), so a report needs neither the model nor the data. Figures are
matplotlib PNGs embedded as data: URIs and the page has no external reference, so it opens
offline; a small inline script marks on <body> whether every figure decoded, which the tests
read back from headless Chromium.
"""

from __future__ import annotations

import base64
import csv
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from defectscope.benchmark.table import Table, TableCell, build_tables, cells_table, reported_legend
from defectscope.engine.artifacts import CURVES_JSON, SCORES_CSV
from defectscope.engine.evaluate import METRIC_NAMES, geometry_sentence, promise_sentence
from defectscope.engine.gallery import GALLERY_DIR, GALLERY_INDEX
from defectscope.report.errors import ReportError
from defectscope.report.page import page, write_page
from defectscope.report.plots import (
    curves_figure,
    figure_png,
    gallery_figure,
    histogram_figure,
    loss_figure,
)
from defectscope.report.predictions import build_predict_report, is_predict_folder
from defectscope.scoring.calibration import Calibration, CalibrationError

REPORT_NAME = "report.html"
BENCHMARK_FORMAT = "defectscope-benchmark/1"


@dataclass
class RunData:
    """What one evaluated run left on disk, as the report needs it."""

    directory: Path
    results: dict[str, Any]
    curves: dict[str, Any] | None = None
    scores: list[dict[str, str]] | None = None
    gallery: list[tuple[dict[str, Any], dict[str, np.ndarray]]] = field(default_factory=list)
    train_log: list[dict[str, Any]] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # what the report could not show, and why


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"{path}: cannot read ({err})") from err


def _train_log(directory: Path, results: dict[str, Any]) -> Path | None:
    """train_log.jsonl beside the results, else in the run the evaluated checkpoint came from."""
    candidates = [directory / "train_log.jsonl"]
    if results.get("checkpoint"):
        candidates.append(Path(results["checkpoint"]).parent.parent / "train_log.jsonl")
    return next((p for p in candidates if p.is_file()), None)


def load_run(directory: str | Path) -> RunData:
    directory = Path(directory)
    if not (directory / "results.json").is_file():
        raise ReportError(f"{directory}: no results.json (expected a run folder or a benchmark output folder)")
    run = RunData(directory, _read_json(directory / "results.json"))
    hint = "re-evaluate with `defectscope test CHECKPOINT --output DIR` to write it"
    if (directory / CURVES_JSON).is_file():
        run.curves = _read_json(directory / CURVES_JSON)
    else:
        run.missing.append(f"{CURVES_JSON} (ROC and PRO curves): {hint}")
    if (directory / SCORES_CSV).is_file():
        with (directory / SCORES_CSV).open(newline="") as f:
            run.scores = list(csv.DictReader(f))
    else:
        run.missing.append(f"{SCORES_CSV} (score histograms): {hint}")
    index = directory / GALLERY_DIR / GALLERY_INDEX
    if index.is_file():
        for item in _read_json(index):
            with np.load(directory / GALLERY_DIR / item["file"]) as npz:
                run.gallery.append((item, {k: npz[k] for k in npz.files}))
    else:
        run.missing.append(f"{GALLERY_DIR}/ (most and least anomalous images): {hint}")
    log = _train_log(directory, run.results)
    if log is not None:
        run.train_log = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    else:
        run.missing.append("train_log.jsonl (loss curves): not beside the results nor in the checkpoint's run")
    return run


# --------------------------------------------------------------------------- HTML pieces


def _img(fig: Figure, alt: str, caption: str = "") -> str:
    data = base64.b64encode(figure_png(fig)).decode("ascii")
    cap = f"<figcaption>{html.escape(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}" if isinstance(value, float) else html.escape(str(value))


def table_html(table: Table) -> str:
    """A benchmark table; reported columns are shaded and their values in italics."""
    first_reported = len(table.header) - table.reported_columns

    def cell(c: TableCell, i: int, tag: str = "td") -> str:
        text = html.escape(c.text)
        if c.bold:
            text = f"<b>{text}</b>"
        if c.italic:
            text = f"<i>{text}</i>"
        cls = ' class="reported"' if i >= first_reported else ""
        return f"<{tag}{cls}>{text}</{tag}>"

    head = "".join(cell(TableCell(h), i, "th") for i, h in enumerate(table.header))
    body = "".join("<tr>" + "".join(cell(c, i) for i, c in enumerate(row)) + "</tr>" for row in table.rows)
    notes = "".join(f"<p class=note>{html.escape(n)}</p>" for n in table.notes)
    return (f"<h3>{html.escape(table.title)}</h3><div class=scroll><table><thead><tr>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>{notes}")


def _metrics_html(results: dict[str, Any]) -> str:
    rows = list(results.get("categories", {}).items())
    if len(rows) > 1:
        rows.append(("mean", results.get("mean", {})))
    intervals = results.get("intervals") or {}

    def value(name: str, metrics: dict[str, Any], key: str) -> str:
        bounds = intervals.get(name, {}).get(key)
        shown = _fmt(metrics.get(key))
        if bounds and None not in bounds and not any(math.isnan(b) for b in bounds) and shown != "–":
            shown += f"<br><small>{bounds[0]:.3f}–{bounds[1]:.3f}</small>"
        return shown

    head = "".join(f"<th>{m}</th>" for m in METRIC_NAMES)
    body = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{value(name, m, k)}</td>" for k in METRIC_NAMES) + "</tr>"
        for name, m in rows
    )
    note = (f"<p class=note>Below a value: its {html.escape(results['interval_method'])}.</p>"
            if results.get("interval_method") else "")
    health = results.get("health") or {}
    if "heldout_loss" in health:
        note += (f"<p class=note>Training health: held-out normal reconstruction loss {health['heldout_loss']:.4f}, "
                 f"the class mean image's {health['mean_image_loss']:.4f}.</p>")
    note += "".join(f"<p class=warning><b>Warning:</b> {html.escape(w)}.</p>" for w in health.get("warnings", []))
    return (f"<div class=scroll><table><thead><tr><th>category</th>{head}</tr></thead>"
            f"<tbody>{body}</tbody></table></div>{note}")


def _percent(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f} %"


def _counted(entry: dict[str, Any]) -> str:
    if not entry.get("total"):
        return "–"
    interval = entry.get("interval")
    spread = f", {_percent(interval[0])}–{_percent(interval[1])}" if interval else ""
    return f"{entry['count']}/{entry['total']} ({_percent(entry['rate'])}{spread})"


def thresholds_html(thresholds: dict[str, Any] | None) -> str:
    """Promised false-alarm rate beside the false alarms and misses counted on the test set."""
    if not thresholds:
        return "<p class=note>No calibrated image threshold (the run had no held-out normal images).</p>"
    intro = promise_sentence(thresholds) + (" Below, what the test set measured at that threshold; normal test "
                                            "images that differ from the training ones can exceed the promise.")
    rows = list(thresholds["categories"].items())

    def promised(entry: dict[str, Any]) -> str:
        bound = entry.get("false_alarm_bound", thresholds.get("false_alarm_bound"))
        return "–" if bound is None else f"≤ {_percent(bound)}"

    def caught(entry: dict[str, Any]) -> str:
        best = entry.get("roc_catch_at_stated_rate")
        found = _counted(entry["caught"]) if "caught" in entry else "–"
        return found + ("" if best is None else f" (the test ROC's best at that rate: {_percent(best)})")

    body = "".join(f"<tr><td>{html.escape(name)}</td><td>{promised(e)}</td><td>{_counted(e['false_alarms'])}</td>"
                   f"<td>{caught(e)}</td></tr>" for name, e in rows)
    if len(rows) > 1:
        pooled = thresholds["all"]
        body += (f"<tr><td>all images</td><td></td><td>{_counted(pooled['false_alarms'])}</td>"
                 f"<td>{_counted(pooled['misses'])} missed</td></tr>")
    return (f"<p class=note>{html.escape(intro)} In brackets: the exact 95 % interval of a count at a threshold "
            "fixed before the test.</p><div class=scroll><table><thead><tr><th>category</th><th>promised false "
            "alarms</th><th>false alarms measured (normal test images flagged)</th><th>defects caught at the "
            f"threshold</th></tr></thead><tbody>{body}</tbody></table></div>")


def _scores_by_category(scores: list[dict[str, str]]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out: dict[str, tuple[list[float], list[float]]] = {}
    for row in scores:
        normal, defective = out.setdefault(row["class"], ([], []))
        (defective if row["label"] == "1" else normal).append(float(row["score"]))
    return {k: (np.asarray(n), np.asarray(d)) for k, (n, d) in out.items()}


def heatmap_range(
    gallery: list[tuple[dict[str, Any], dict[str, np.ndarray]]], threshold: float | None
) -> tuple[float, float]:
    """Colour range shared by every heatmap of a run, so colours compare across images."""
    maps = [a["map"].astype(np.float32) for _, a in gallery]
    normal = [a["map"].astype(np.float32) for m, a in gallery if m.get("end") == "least"] or maps
    low = float(np.median(np.concatenate([m.ravel() for m in normal])))
    high = float(threshold) if threshold else float(np.quantile(np.concatenate([m.ravel() for m in maps]), 0.999))
    return (low, high) if high > low else (min(low, high), max(low, high) + 1e-6)


def _standardization_note(results: dict) -> str:
    if results.get("map_standardization", "none") == "none":
        return ""
    return "; maps z-scored per position against the held-out normal images (eval.map_standardization: position)"


def calibration_summary(stored: dict[str, Any] | None) -> dict[str, Any]:
    """The flat threshold fields of a results.json calibration (`Calibration.summary`); runs written
    before the calibration was typed stored those fields flat, under older names."""
    if not stored:
        return {}
    if "image" in stored:
        try:
            return Calibration.from_dict(stored).summary()
        except CalibrationError as err:
            raise ReportError(f"results.json: {err}") from err
    renamed = {"image_false_alarm_rate": "false_alarm_rate", "image_false_alarm_bound": "false_alarm_bound"}
    return {renamed.get(k, k): v for k, v in stored.items()}


def run_sections(run: RunData, prefix: str = "") -> str:
    """The figures of one evaluated run, each group under its own heading."""
    r = run.results
    calibration = calibration_summary(r.get("calibration"))
    env = r.get("environment", {})
    parts = [
        f"<h2 id='{prefix}summary'>Metrics</h2>",
        f"<p>{html.escape(str(r.get('model')))}, {r.get('num_test_images')} test images; "
        f"{r.get('images_per_second') or float('nan'):.1f} images/s (batch {r.get('eval_batch_size')}); "
        f"{html.escape(env.get('device_name', '?'))}, torch {html.escape(env.get('torch', '?'))}, "
        f"commit {html.escape(env.get('commit', '?'))}, {html.escape(env.get('date', '?'))}"
        f"{_standardization_note(r)}.</p>",
        f"<p>{html.escape(geometry_sentence(r.get('geometry')))}</p>" if r.get("geometry") else "",
        _metrics_html(r),
    ]
    if "thresholds" in r:  # results.json written before thresholds were reported has no such key
        parts += [f"<h2 id='{prefix}thresholds'>Thresholds: promised vs measured false alarms</h2>",
                  thresholds_html(r["thresholds"])]
    if run.curves:
        limit = float(run.curves.get("fpr_limit", 0.3))
        figures = [_img(curves_figure(name, entry, limit), f"ROC and PRO curves, {name}")
                   for name, entry in run.curves.get("categories", {}).items()]
        parts += [f"<h2 id='{prefix}curves'>ROC and PRO curves</h2>", *figures]
    if run.scores:
        threshold = calibration.get("image_threshold")
        figures = [_img(histogram_figure(name, normal, defective, threshold), f"score histogram, {name}")
                   for name, (normal, defective) in _scores_by_category(run.scores).items()]
        rate = calibration.get("false_alarm_rate")
        rule = (f"the score a new normal image exceeds with probability at most {_percent(rate)}"
                if rate is not None else "their largest score")
        note = ("Dashed line: the image threshold calibrated on held-out normal training images "
                f"({rule}); images above it are flagged.") if threshold is not None else \
            "No calibrated threshold in results.json."
        parts += [f"<h2 id='{prefix}scores'>Score histograms</h2><p class=note>{note}</p>", *figures]
    if run.train_log:
        fig = loss_figure(run.train_log)
        if fig is not None:
            parts += [f"<h2 id='{prefix}training'>Training loss</h2>", _img(fig, "training loss curves")]
    if run.gallery:
        low, high = heatmap_range(run.gallery, calibration.get("pixel_threshold"))
        parts.append(f"<h2 id='{prefix}gallery'>Most and least anomalous test images</h2>"
                     f"<p class=note>Heatmap colours run from a typical normal pixel ({low:.4g}, the median of the "
                     f"least anomalous maps shown) to the calibrated pixel threshold ({high:.4g}, held-out normal "
                     f"pixels exceed it at a rate of {_percent(calibration.get('pixel_false_alarm_rate', 0.001))}): "
                     "red is beyond what normal images reach. Green contour: ground truth.</p>")
        for end, title in (("most", "most anomalous"), ("least", "least anomalous")):
            items = [(m, a) for m, a in run.gallery if m.get("end") == end]
            if items:
                parts.append(_img(gallery_figure(items, low, high, title), f"{title} test images"))
        extras = sorted({name for m, _ in run.gallery for name in m.get("extra_maps", [])})
        parts.append(
            f"<h2 id='{prefix}model-maps'>Model maps</h2><p class=note>"
            + (f"Extra columns above are the model's own maps ({html.escape(', '.join(extras))}), saved through "
               "<code>AnomalyModel.explain_maps</code>; for PVQAE the code-level maps show which code resolution "
               "each region was routed to (0 = finest)." if extras else
               "This model exposes no extra maps. A model that implements <code>AnomalyModel.explain_maps</code> "
               "(PVQAE: its code-level maps) gets them drawn beside the heatmaps.")
            + "</p>"
        )
    if run.missing:
        items = "".join(f"<li>{html.escape(m)}</li>" for m in run.missing)
        parts.append(f"<h2 id='{prefix}missing'>Not shown</h2><ul>{items}</ul>")
    return "\n".join(parts)


def run_report_html(directory: Path) -> str:
    run = load_run(directory)
    nav = [("summary", "metrics"), ("thresholds", "thresholds"), ("curves", "curves"), ("scores", "histograms"),
           ("training", "training"), ("gallery", "gallery")]
    title = f"defectscope report: {run.results.get('model', '?')} · {directory.name}"
    checkpoint = run.results.get("checkpoint")
    subtitle = f"Run folder {directory.resolve()}" + (f"; checkpoint {checkpoint}." if checkpoint else ".")
    return page(title, subtitle, nav, run_sections(run))


def benchmark_report_html(directory: Path, results: dict[str, Any]) -> str:
    parts = [
        f"<h2 id=tables>Results</h2><p class=note>{len(results['cells'])} of {results['cells_total']} cells "
        "finished. Bold: best measured value of the row. Shaded columns marked † are <i>reported</i> in the "
        "papers, not measured here.</p>",
        *[table_html(t) for t in build_tables(results)],
    ]
    legend = reported_legend(results)
    if legend:
        items = "".join(f"<li>{html.escape(line[2:].replace('*', ''))}</li>" for line in legend)
        parts.append(f"<h3>Reported numbers (†)</h3><ul class=note>{items}</ul>")
    parts.append(table_html(cells_table(results)))
    nav = [("tables", "results")]
    for record in results["cells"]:
        cell_id = record["cell"]["id"]
        anchor = f"cell-{cell_id.replace('.', '-')}-"
        nav.append((f"{anchor}summary", cell_id))
        run = load_run(directory / "cells" / cell_id)
        parts.append(f"<section class=cell><h2 id='{anchor}top'>Cell {html.escape(cell_id)}</h2>"
                     f"{run_sections(run, anchor)}</section>")
    title = f"defectscope benchmark report: {results['suite']}"
    return page(title, f"Benchmark folder {directory.resolve()}; suite {results['suite_file']}.", nav,
                "\n".join(parts))


def build_report(directory: str | Path, output: str | Path | None = None) -> Path:
    """Write the HTML report of a run, benchmark or predict folder; returns its path."""
    directory = Path(directory)
    if is_predict_folder(directory):
        return build_predict_report(directory, output)
    results_path = directory / "results.json"
    if not results_path.is_file():
        raise ReportError(f"{directory}: no results.json nor scores.json (expected a run folder, a benchmark "
                          "output folder or a `defectscope predict` output folder)")
    results = _read_json(results_path)
    if results.get("format") == BENCHMARK_FORMAT:
        text = benchmark_report_html(directory, results)
    else:
        text = run_report_html(directory)
    return write_page(Path(output) if output else directory / REPORT_NAME, text)
