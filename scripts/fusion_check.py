"""Does fusing detectors help at the operating point? Image scores of several benchmark cells, each
standardised by its own held-out normal scores (mean and spread stored in the calibration: no test
label is used to build the fusion), averaged, and measured on the test set like any model.

    python scripts/fusion_check.py runs/benchmarks/calibration padim_random patchcore_random mean_image

For each dataset the cells `<model>.<dataset>.multi_class.all.s0` are joined on the test image path;
prints image AUROC and defects caught at ≤ 1 % / 5 % false alarms (test ROC, 95 % bootstrap
intervals) per category for each model alone and for the fusion of all of them.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np

from defectscope.metrics import image_auroc, image_auroc_interval
from defectscope.metrics.operating_point import catch_rate_at, catch_rate_interval


def load(cell: Path) -> tuple[dict[str, tuple[str, int, float]], dict[str, tuple[float, float]]]:
    """{path: (class, label, score)} of the test images, and {class: (held-out mean, std)}."""
    with (cell / "scores.csv").open() as f:
        rows = {r["path"]: (r["class"], int(r["label"]), float(r["score"])) for r in csv.DictReader(f)}
    calibration = json.loads((cell / "results.json").read_text())["calibration"]
    stats = {}
    for name in {c for c, _, _ in rows.values()}:
        part = calibration["classes"].get(name, calibration["image"])
        held = np.asarray(part["held_out_scores"], np.float64)
        stats[name] = (float(held.mean()), float(held.std()) or 1.0)
    return rows, stats


def line(label: str, scores: np.ndarray, labels: np.ndarray) -> str:
    a = image_auroc(scores, labels)
    lo, hi = image_auroc_interval(scores, labels, resamples=1000)
    out = [f"{label:<34} AUROC {a:.3f} ({lo:.3f}–{hi:.3f})"]
    for rate in (0.01, 0.05):
        c = catch_rate_at(scores, labels, rate)
        clo, chi = catch_rate_interval(scores, labels, rate, resamples=1000)
        out.append(f"caught at ≤{rate:.0%} {c:.3f} ({clo:.3f}–{chi:.3f})")
    return " | ".join(out)


def main(folder: str, models: list[str]) -> None:
    cells = Path(folder, "cells")
    datasets = sorted({p.name.split(".")[1] for p in cells.iterdir() if p.name.split(".")[0] in models})
    for dataset in datasets:
        found = {m: cells / f"{m}.{dataset}.multi_class.all.s0" for m in models}
        found = {m: c for m, c in found.items() if (c / "results.json").is_file()}
        if len(found) < 2:
            continue
        loaded = {m: load(c) for m, c in found.items()}
        paths = sorted(set.intersection(*(set(rows) for rows, _ in loaded.values())))
        classes = np.array([next(iter(loaded.values()))[0][p][0] for p in paths])
        labels = np.array([next(iter(loaded.values()))[0][p][1] for p in paths])
        z = {m: np.array([(rows[p][2] - stats[rows[p][0]][0]) / stats[rows[p][0]][1] for p in paths])
             for m, (rows, stats) in loaded.items()}
        print(f"## {dataset}: {len(paths)} test images, models {', '.join(found)}")
        for name in sorted(set(classes)):
            pick = classes == name
            print(f"### {name}")
            for m, scores in z.items():
                print(line(m, scores[pick], labels[pick]))
            print(line("fusion (mean of held-out z)", np.mean([s[pick] for s in z.values()], 0), labels[pick]))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
