"""Benchmark tables: models as columns, categories as rows, mean last, best measured value in bold.

Built from a benchmark's results.json alone (cells plus the reported series it selected), as
plain structures that render to markdown here and to HTML in the report.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

TABLE_METRICS = {  # the operating point leads: defects caught while flagging at most 1 % of good parts
    "catch_1pct": "Defects caught at ≤ 1 % false alarms (test ROC)",
    "image_auroc": "Image AUROC",
    "pixel_auroc": "Pixel AUROC",
    "aupro": "AU-PRO (FPR ≤ 0.3)",
    "image_f1_max": "Image F1-max",
}
MEAN_ROW = "mean"


@dataclass
class TableCell:
    text: str
    bold: bool = False
    italic: bool = False


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[TableCell]]  # first cell: the row label
    notes: list[str] = field(default_factory=list)
    reported_columns: int = 0  # the last this many columns are reported, not measured


def _fmt_percent(values: list[float]) -> str:
    if not values:
        return "–"
    mean = 100 * float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {100 * float(np.std(values)):.1f}"


def _groups(results: dict[str, Any]) -> list[tuple[str, str]]:
    """(dataset, setting) pairs with at least one finished cell, in the suite's order."""
    present = {(c["cell"]["dataset"], c["cell"]["setting"]) for c in results["cells"]}
    return [(d["key"], s) for d in results["datasets"] for s in results["settings"] if (d["key"], s) in present]


def _measured(results: dict[str, Any], dataset: str, setting: str, metric: str) -> dict[str, dict[str, list[float]]]:
    """{model: {category: [value per seed]}} of the finished cells of one group."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for record in results["cells"]:
        cell = record["cell"]
        if cell["dataset"] != dataset or cell["setting"] != setting:
            continue
        for category, metrics in record["categories"].items():
            value = metrics.get(metric)
            if value is not None and not math.isnan(value):
                out[cell["model"]][category].append(float(value))
    return out


def _intervals(results: dict[str, Any], dataset: str, setting: str, metric: str) -> dict[str, dict[str, list]]:
    """{model: {category: [low, high]}}: the 95 % bootstrap interval a single-seed cell stored."""
    out: dict[str, dict[str, list]] = defaultdict(dict)
    for record in results["cells"]:
        cell = record["cell"]
        if cell["dataset"] == dataset and cell["setting"] == setting:
            for category, found in (record.get("intervals") or {}).items():
                bounds = found.get(metric)
                if bounds and None not in bounds and not any(math.isnan(b) for b in bounds):
                    out[cell["model"]][category] = bounds
    return out


def metric_table(results: dict[str, Any], dataset: str, setting: str, metric: str) -> Table | None:
    measured = _measured(results, dataset, setting, metric)
    intervals = _intervals(results, dataset, setting, metric)
    if not measured:
        return None
    models = [m for m in results["models"] if m["key"] in measured]
    reported_as = next(d["reported_as"] for d in results["datasets"] if d["key"] == dataset)
    series = [s for s in results.get("reported", []) if s["dataset"] == reported_as and s["metric"] == metric]
    categories = list(dict.fromkeys(cat for m in models for cat in measured[m["key"]]))
    series = [s for s in series if any(cat in s["values"] for cat in categories)]

    rows: list[list[TableCell]] = []
    means: list[list[float] | None] = [[] for _ in models]
    reported_means: list[list[float] | None] = [[] for _ in series]
    for category in categories:
        row = [TableCell(category)]
        per_model = [measured[m["key"]].get(category, []) for m in models]
        shown = [round(100 * float(np.mean(v)), 1) if v else None for v in per_model]
        best = max((v for v in shown if v is not None), default=None)
        for i, values in enumerate(per_model):
            text = _fmt_percent(values)
            bounds = intervals.get(models[i]["key"], {}).get(category)
            if len(values) == 1 and bounds:
                text += f" ({100 * bounds[0]:.1f}–{100 * bounds[1]:.1f})"
            row.append(TableCell(text, bold=shown[i] is not None and shown[i] == best))
            if values and means[i] is not None:
                means[i].append(float(np.mean(values)))
            else:
                means[i] = None
        for j, s in enumerate(series):
            value = s["values"].get(category)
            row.append(TableCell("–" if value is None else f"{100 * value:.1f}", italic=value is not None))
            if value is not None and reported_means[j] is not None:
                reported_means[j].append(value)
            else:
                reported_means[j] = None
        rows.append(row)
    if len(categories) > 1:
        mean_values = [float(np.mean(v)) if v else None for v in means]
        shown = [round(100 * v, 1) if v is not None else None for v in mean_values]
        best = max((v for v in shown if v is not None), default=None)
        row = [TableCell(MEAN_ROW, bold=True)]
        row += [TableCell("–" if v is None else f"{100 * v:.1f}", bold=v is not None and shown[i] == best)
                for i, v in enumerate(mean_values)]
        row += [TableCell("–" if not v else f"{100 * float(np.mean(v)):.1f}", italic=bool(v)) for v in reported_means]
        rows.append(row)
    header = ["category"] + [m["label"] for m in models] + [s["header"] + " †" for s in series]
    seeds = sorted({r["cell"]["seed"] for r in results["cells"]
                    if r["cell"]["dataset"] == dataset and r["cell"]["setting"] == setting})
    notes = []
    if intervals:
        notes.append("In brackets: 95 % stratified bootstrap interval over test images (one seed).")
    if len(seeds) > 1:
        notes.append(f"Measured: mean ± std over seeds {', '.join(map(str, seeds))}.")
    return Table(f"{dataset} · {setting} · {TABLE_METRICS[metric]} (%)", header, rows, notes, len(series))


def cost_table(results: dict[str, Any], dataset: str, setting: str) -> Table | None:
    """What each model cost on one dataset and setting (mean over its cells)."""
    by_model: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in results["cells"]:
        cell = record["cell"]
        if cell["dataset"] == dataset and cell["setting"] == setting:
            by_model[cell["model"]].append(record)
    models = [m for m in results["models"] if m["key"] in by_model]
    if not models:
        return None

    def mean_of(records: list[dict[str, Any]], get: Any) -> float | None:
        values = [get(r) for r in records]
        values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
        return float(np.mean(values)) if values else None

    batch_sizes = sorted({int(b) for r in results["cells"] for b in r.get("images_per_second", {})})
    lines: list[tuple[str, Any, str]] = [
        ("training time (s)", lambda r: r.get("train_seconds"), "{:.1f}"),
        *[(f"inference images/s, batch {b}", lambda r, b=b: r.get("images_per_second", {}).get(str(b)), "{:.1f}")
          for b in batch_sizes],
        *[(f"onnxruntime images/s, batch {b}",
           lambda r, b=b: (r.get("onnxruntime_images_per_second") or {}).get(str(b)), "{:.1f}") for b in batch_sizes],
        ("peak RSS (MiB)", lambda r: r.get("peak_rss_mib"), "{:.0f}"),
        ("peak GPU memory (MiB)", lambda r: r.get("peak_gpu_mib"), "{:.0f}"),
        ("parameters (M)", lambda r: r.get("parameters", 0) / 1e6, "{:.3f}"),
        ("checkpoint size (MB)", lambda r: r.get("checkpoint_bytes", 0) / 1e6, "{:.2f}"),
        ("GFLOPs per image", lambda r: r["flops_per_image"] / 1e9 if r.get("flops_per_image") else None, "{:.3f}"),
    ]
    rows = []
    for label, get, fmt in lines:
        values = [mean_of(by_model[m["key"]], get) for m in models]
        if all(v is None for v in values):
            continue
        rows.append([TableCell(label)] + [TableCell("–" if v is None else fmt.format(v)) for v in values])
    notes = []
    if setting == "single_class":
        notes.append("Single-class: each number is the mean over the model's per-category cells.")
    return Table(f"{dataset} · {setting} · cost", ["", *[m["label"] for m in models]], rows, notes)


def cells_table(results: dict[str, Any]) -> Table:
    """One line per finished cell: where and with what each number was measured."""
    rows = []
    for record in results["cells"]:
        env = record.get("environment", {})
        rows.append([TableCell(record["cell"]["id"]), TableCell(str(record.get("train_steps", "–"))),
                     TableCell(f"{record.get('train_seconds', float('nan')):.1f}"),
                     TableCell(env.get("device_name", "?")), TableCell(env.get("torch", "?")),
                     TableCell(env.get("commit", "?")), TableCell(env.get("date", "?"))])
    return Table("cells", ["cell", "steps", "train s", "hardware", "torch", "commit", "finished"], rows)


def build_tables(results: dict[str, Any]) -> list[Table]:
    tables: list[Table] = []
    for dataset, setting in _groups(results):
        for metric in TABLE_METRICS:
            table = metric_table(results, dataset, setting, metric)
            if table is not None:
                tables.append(table)
        cost = cost_table(results, dataset, setting)
        if cost is not None:
            tables.append(cost)
    return tables


def _md_cell(cell: TableCell) -> str:
    text = cell.text.replace("|", "\\|")
    if cell.bold:
        text = f"**{text}**"
    if cell.italic:
        text = f"*{text}*"
    return text


def table_markdown(table: Table) -> str:
    lines = [f"### {table.title}", "", "| " + " | ".join(h.replace("|", "\\|") for h in table.header) + " |",
             "|" + "---|" * len(table.header)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    if table.notes:
        lines += ["", *table.notes]
    return "\n".join(lines) + "\n"


def reported_legend(results: dict[str, Any]) -> list[str]:
    """One line per reported source shown: paper, table, section, setting, setup."""
    seen = {}
    for s in results.get("reported", []):
        seen.setdefault((s["paper"], s["table"]), s)
    return [
        f"- {s['short']}, Table {s['table']} ({s['section']}; page {s['page'] or 'not in the text extraction'}): "
        f"*{s['paper']}*; setting: {s['setting']}; {s['setup']}"
        for s in seen.values()
    ]


def results_markdown(results: dict[str, Any]) -> str:
    """The benchmark's results.md."""
    total, done = results["cells_total"], len(results["cells"])
    lines = [
        f"# Benchmark `{results['suite']}`",
        "",
        f"{done} of {total} cells finished" + (f"; pending: {', '.join(results['pending'])}" if results["pending"]
                                                else "") + f". Suite file: `{results['suite_file']}`; "
        f"generated {results['generated']}.",
        "",
        "Measured numbers are ours (AU-PRO integrates the PRO curve up to FPR 0.3, normalised). "
        "**Bold**: the best measured value of the row. Columns marked † are *reported* in the papers, "
        "not measured here: copied from the tables listed below, with the papers' own training "
        "setups, image sizes and hardware. Mean rows average the rows shown.",
        "",
    ]
    for table in build_tables(results):
        lines.append(table_markdown(table))
    legend = reported_legend(results)
    if legend:
        lines += ["## Reported numbers (†)", "", *legend, ""]
    lines += ["## Cells", "", table_markdown(cells_table(results))]
    return "\n".join(lines)
