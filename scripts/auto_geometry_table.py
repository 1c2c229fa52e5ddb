"""The table of docs/results/geometry.md's "auto" section from the cells of `benchmarks/auto_geometry.yaml`.

    python scripts/auto_geometry_table.py runs/benchmarks/auto_geometry

One row per model and dataset: stretch-256 beside auto (the size it resolved to), with image
AUROC, defects caught at ≤ 1 % false alarms on the test ROC, the calibrated threshold's false
alarms and catches, pixel AUROC and AU-PRO; 95 % bootstrap intervals where the cells have them.
"""

from __future__ import annotations

from geometry_table import cells_from_command_line  # scripts/ is on the path when a script runs

MODELS = {"mean_image": "Mean image (no training)", "padim": "PaDiM", "patchcore": "PatchCore"}
DATASETS = {"mtsd": "MTSD", "pill_strips": "pill strips (4 pills, 1:4)", "mtsd_strips": "MTSD strips (3 tiles, ~1:2.7)"}


def _ci(value: float | None, interval: list[float] | None, percent: bool = False) -> str:
    if value is None:
        return "–"
    scale, digits = (100, 1) if percent else (1, 3)
    text = f"{scale * value:.{digits}f}"
    return f"{text} ({scale * interval[0]:.{digits}f}–{scale * interval[1]:.{digits}f})" if interval else text


def _count(entry: dict | None) -> str:
    if not entry or not entry.get("total"):
        return "–"
    low, high = entry["interval"]
    return f"{entry['count']}/{entry['total']} ({100 * entry['rate']:.1f}, {100 * low:.1f}–{100 * high:.1f})"


def main() -> None:
    found = cells_from_command_line(__doc__.splitlines()[0], lambda key: tuple(key.rsplit("_", 1)))
    head = ["data", "model", "images as", "image AUROC", "caught at ≤ 1 % FA, test ROC (%)",
            "false alarms at the threshold (promised ≤)", "caught at the threshold (%)", "pixel AUROC", "AU-PRO"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    for dataset, data_label in DATASETS.items():
        for model, label in MODELS.items():
            for mode in ("stretch", "auto", "auto2x"):
                if (dataset, model, mode) not in found:
                    continue
                cell, results = found[(dataset, model, mode)]
                category = next(iter(cell["categories"]))
                metrics, intervals = cell["categories"][category], (cell.get("intervals") or {}).get(category, {})
                size = results["geometry"]["image_size"]
                shown = "stretch 256 × 256" if mode == "stretch" else \
                    f"auto{' at 2 × 256² px' if mode == 'auto2x' else ''} → {size[0]} × {size[1]}"
                t = results["thresholds"]["categories"][category]
                row = [data_label, label, shown, _ci(metrics["image_auroc"], intervals.get("image_auroc")),
                       _ci(metrics["catch_1pct"], intervals.get("catch_1pct"), percent=True),
                       f"{_count(t['false_alarms'])} (≤ {100 * t['false_alarm_bound']:.1f} %)", _count(t["caught"]),
                       _ci(metrics["pixel_auroc"], intervals.get("pixel_auroc")), f"{metrics['aupro']:.3f}"]
                print("| " + " | ".join(row) + " |")
    commits = sorted({c["environment"].get("commit") for c, _ in found.values()})
    dates = sorted({c["environment"].get("date", "")[:10] for c, _ in found.values()})
    env = next(iter(found.values()))[0]["environment"]
    device = env.get("device_name", env.get("device", ""))
    print(f"\n{device}; commit {', '.join(map(str, commits))}; {', '.join(dates)}")


if __name__ == "__main__":
    main()
