"""The papers' reported numbers, kept as data (benchmarks/reported/*.yaml) to show beside ours.

Each file transcribes tables of one paper: cells are kept exactly as printed ("91.9 / 92.7",
"(87.0, 64.7)", "0.997 / 0.914 → 0.998 / 0.951"); the loader splits a cell into its values on
"/", "," and "→", reads "—" or an empty slot as missing, and divides by the table's `scale`
(100 for percent) so reported numbers share our 0-1 scale. Nothing here is measured by us.
"""

from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from defectscope.config import ConfigError, from_dict, read_yaml

METRICS = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")
MISSING = {"", "—", "–", "-"}


@dataclass(frozen=True)
class ReportedColumn:
    name: str  # the method, as we name it in tables
    model: str = ""  # our registry name when we implement the method (ae_ssim, vq_e, pvqae, vitae, fader)
    printed: str = ""  # the header as printed, when it differs from name
    at: int = -1  # printed column this reads; -1: the column's own position
    take: tuple[int, ...] = ()  # which values of the printed cell, in the order of `metrics`; (): all


@dataclass(frozen=True)
class ReportedRow:
    category: str  # our category name ("bottle", "01", "mtsd"); "mean" for a printed average
    printed: str
    cells: tuple[str, ...]
    dataset: str = ""  # the table's dataset when empty


@dataclass(frozen=True)
class ReportedTable:
    id: str  # as printed: "I", "3"
    section: str
    caption: str
    setting: str  # multi_class, single_class or "not stated"
    setup: str
    scale: float  # printed value / scale = our 0-1 value
    metrics: tuple[str, ...]
    columns: tuple[ReportedColumn, ...]
    rows: tuple[ReportedRow, ...]
    page: int | None = None
    dataset: str = ""
    note: str = ""


@dataclass(frozen=True)
class ReportedPaper:
    paper: str
    short: str  # e.g. "PVQAE paper", used in column headers
    seed: str  # the text file the numbers were transcribed from
    tables: tuple[ReportedTable, ...]
    authors: str = ""
    venue: str = ""
    file: str = field(default="", compare=False)


@dataclass(frozen=True)
class ReportedValue:
    value: float  # on our 0-1 scale
    printed: str  # the whole printed cell it came from


def split_cell(text: str) -> list[float | None]:
    """"(95.7, 91.6,)" → [95.7, 91.6, None]: a printed cell's values in order, None where missing."""
    body = text.strip().strip("()").strip()
    values: list[float | None] = []
    for part in re.split(r"[/,→]", body):
        part = part.strip()
        if part in MISSING:
            values.append(None)
            continue
        try:
            values.append(float(part))
        except ValueError:
            raise ValueError(f"cannot read {part!r} in the printed cell {text!r}") from None
    return values


def load_paper(path: str | Path) -> ReportedPaper:
    """One reported-numbers file, checked: known metrics, every row as wide as the header."""
    path = Path(path)
    paper = from_dict(ReportedPaper, read_yaml(path), "", str(path))
    for table in paper.tables:
        where = f"{path}: table {table.id}"
        unknown = [m for m in table.metrics if m not in METRICS]
        if unknown:
            raise ConfigError(f"{where}: unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
        width = max(c.at if c.at >= 0 else i for i, c in enumerate(table.columns)) + 1
        for row in table.rows:
            if len(row.cells) != width:
                raise ConfigError(f"{where}, row {row.printed!r}: {len(row.cells)} cells, the header needs {width}")
            for cell in row.cells:
                try:
                    split_cell(cell)
                except ValueError as err:
                    raise ConfigError(f"{where}, row {row.printed!r}: {err}") from None
    return dataclasses.replace(paper, file=path.name)


def load_reported(directory: str | Path) -> list[ReportedPaper]:
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return [load_paper(p) for p in sorted(directory.glob("*.yaml"))]


def column_values(table: ReportedTable, index: int) -> dict[tuple[str, str, str], ReportedValue]:
    """{(dataset, category, metric): value} of one logical column of a table."""
    column = table.columns[index]
    at = column.at if column.at >= 0 else index
    out = {}
    for row in table.rows:
        printed = row.cells[at]
        values = split_cell(printed)
        picked = [values[i] if i < len(values) else None for i in column.take] if column.take else values
        for metric, value in zip(table.metrics, picked, strict=False):
            if value is not None and not math.isnan(value):
                out[(row.dataset or table.dataset, row.category, metric)] = ReportedValue(value / table.scale, printed)
    return out


@dataclass(frozen=True)
class ReportedSeries:
    """One method of one paper for one metric and dataset: what a reported table column shows."""

    paper: ReportedPaper
    table: ReportedTable
    column: ReportedColumn
    values: dict[str, ReportedValue]  # category -> value

    @property
    def header(self) -> str:
        return f"{self.column.name} (reported: {self.paper.short}, Table {self.table.id})"


def select_series(
    papers: list[ReportedPaper], wanted: list[str], dataset: str, metric: str
) -> list[ReportedSeries]:
    """Reported columns for `dataset` and `metric` whose model or method name is in `wanted`.

    A method that several tables of one paper report (FADeR in Tables 1 and 2) appears once,
    from the first table that has this metric for this dataset.
    """
    keys = {w.lower() for w in wanted}
    found: list[ReportedSeries] = []
    seen: set[tuple[str, str]] = set()
    for paper in papers:
        for table in paper.tables:
            if metric not in table.metrics:
                continue
            for index, column in enumerate(table.columns):
                if column.name.lower() not in keys and (not column.model or column.model.lower() not in keys):
                    continue
                if (paper.paper, column.name) in seen:
                    continue
                values = {cat: v for (ds, cat, m), v in column_values(table, index).items()
                          if ds == dataset and m == metric}
                if values:
                    seen.add((paper.paper, column.name))
                    found.append(ReportedSeries(paper, table, column, values))
    return found
