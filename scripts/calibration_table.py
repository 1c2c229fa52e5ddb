"""Calibration schemes side by side: the promise against what the test normals measured, and what it catches.

    python scripts/calibration_table.py runs/benchmarks/calibration

Reads each cell's results.json (benchmarks/calibration.yaml) and prints one markdown row per cell and
category: held-out n, promised false alarms, false alarms measured on the test normals (exact 95 %
interval), defects caught at the calibrated threshold, the test ROC's best at the stated rate, and the
threshold-free catch at 1 % with its bootstrap interval.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def pct(value: float) -> str:
    return f"{100 * value:.1f}"


def counted(entry: dict) -> str:
    low, high = entry["interval"]
    return f"{entry['count']}/{entry['total']} ({pct(entry['rate'])}, {pct(low)}–{pct(high)})"


def main(folder: str) -> None:
    print("| cell | category | held-out n | promised ≤ | false alarms on test normals | caught at threshold "
          "| test ROC at stated rate | caught at 1 % (test ROC) | image AUROC |")
    print("|---|---|---|---|---|---|---|---|---|")
    for results_file in sorted(Path(folder, "cells").glob("*/results.json")):
        results = json.loads(results_file.read_text())
        cell = results_file.parent.name
        thresholds = results.get("thresholds") or {}
        for name, entry in thresholds.get("categories", {}).items():
            metrics = results["categories"][name]
            interval = results.get("intervals", {}).get(name, {}).get("catch_1pct", [float("nan")] * 2)
            print(f"| {cell} | {name} | {entry['held_out_normals']} | {pct(entry['false_alarm_bound'])} % "
                  f"| {counted(entry['false_alarms'])} | {counted(entry['caught'])} "
                  f"| {pct(entry['roc_catch_at_stated_rate'])} | {pct(metrics['catch_1pct'])} "
                  f"({pct(interval[0])}–{pct(interval[1])}) | {metrics['image_auroc']:.3f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "runs/benchmarks/calibration")
