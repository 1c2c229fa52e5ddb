"""The tables of docs/results/geometry.md from the cells of `benchmarks/geometry.yaml`.

    python scripts/geometry_table.py runs/benchmarks/geometry
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

MODES = {"stretch": "stretch 256", "keep_aspect": "keep aspect 256", "tiled": "own size, tiles 256/192",
         "tiled128": "own size, tiles 128/96"}
MODELS = {"mean_image": "Mean image (no training)", "padim": "PaDiM", "patchcore": "PatchCore",
          "pvqae": "PVQAE on features (6 min)"}


def _ci(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "–"
    return f"{value:.3f} ({interval[0]:.3f}–{interval[1]:.3f})" if interval else f"{value:.3f}"


def _rate(entry: dict) -> str:
    return f"{entry['count']}/{entry['total']}" if entry and entry.get("total") else "–"


def cells_from_command_line(description: str, split: Callable[[str], tuple[str, str]]) -> dict:
    """{(dataset, model, mode): (cell.json, results.json)} of the finished cells of the folder named on
    the command line; `split` turns a cell's model key into (model, mode)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("folder", type=Path)
    folder = parser.parse_args().folder
    found = {}
    for path in sorted(folder.glob("cells/*/cell.json")):
        cell = json.loads(path.read_text())
        found[(cell["cell"]["dataset"], *split(cell["cell"]["model"]))] = \
            (cell, json.loads((path.parent / "results.json").read_text()))
    return found


def _model_and_mode(key: str) -> tuple[str, str]:
    return ("mean_image", key[len("mean_image_"):]) if key.startswith("mean_image") else tuple(key.split("_", 1))


def main() -> None:
    found = cells_from_command_line(__doc__.splitlines()[0], _model_and_mode)
    for dataset in ("mtsd", "mvtec"):
        rows = [(m, mode) for m in MODELS for mode in MODES if (dataset, m, mode) in found]
        if not rows:
            continue
        categories = sorted(found[(dataset, *rows[0])][0]["categories"])
        keys = ["mean"] if len(categories) == 1 else [*categories, "mean"]
        head = ["model", "images as"]
        head += [f"image AUROC{'' if k == 'mean' and len(categories) == 1 else ' ' + k}" for k in keys]
        head += [f"pixel AUROC{'' if k == 'mean' and len(categories) == 1 else ' ' + k}" for k in keys]
        head += ["AU-PRO", "images/s", "peak RSS MiB", "false alarms (promised ≤)", "misses"]
        print(f"\n### {dataset}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for model, mode in rows:
            cell, results = found[(dataset, model, mode)]
            metrics = {**cell["categories"], "mean": cell["mean"]} if len(categories) > 1 else \
                {"mean": cell["categories"][categories[0]]}
            intervals = cell.get("intervals") or {}
            if len(categories) == 1:
                intervals = {"mean": intervals.get(categories[0], {})}
            row = [MODELS[model], MODES[mode]]
            for metric in ("image_auroc", "pixel_auroc"):
                row += [_ci(metrics[k].get(metric), intervals.get(k, {}).get(metric)) for k in keys]
            row.append(f"{metrics['mean']['aupro']:.3f}")
            row.append(f"{results['images_per_second_end_to_end']:.1f}")
            row.append(f"{cell['peak_rss_mib']:.0f}")
            t = results.get("thresholds") or {}
            every = t.get("all", {})
            row.append(f"{_rate(every.get('false_alarms'))} ({100 * t.get('false_alarm_bound', float('nan')):.1f} %)")
            row.append(_rate(every.get("misses")))
            print("| " + " | ".join(row) + " |")
        env = next(iter(found.values()))[0]["environment"]
        print(f"\n{env.get('device', '')}, commit {env.get('commit')}, {env.get('date', '')}")


if __name__ == "__main__":
    main()
