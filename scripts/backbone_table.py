"""The table of docs/results/backbones.md from the cells of `benchmarks/backbones.yaml` and `pvqae_backbones.yaml`.

    python scripts/backbone_table.py runs/benchmarks/backbones runs/benchmarks/pvqae_backbones
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

BACKBONES = {"mobilenet_v2": "MobileNetV2", "lite0": "EfficientNet-Lite0", "lite1": "EfficientNet-Lite1",
             "lite2": "EfficientNet-Lite2"}
METRICS = {"image_auroc": "image AUROC", "pixel_auroc": "pixel AUROC", "aupro": "AU-PRO"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+")
    args = parser.parse_args()
    cells = [json.loads(p.read_text()) for folder in args.folders for p in sorted(folder.glob("cells/*/cell.json"))]
    by_key = {(c["cell"]["model_name"], backbone_of(c["cell"]["model"]), c["cell"]["dataset"]): c for c in cells}
    for dataset in ("mtsd", "mvtec"):
        categories = sorted({k for c in cells if c["cell"]["dataset"] == dataset for k in c["categories"]})
        head = ["model", "backbone"]
        for label in METRICS.values():
            if len(categories) == 1:
                head.append(label)
            else:
                head += [f"{label} {cat}" for cat in categories] + [f"{label} mean"]
        head += ["fit s", "images/s (b1 / b32)", "GFLOPs / image", "peak RSS MiB", "checkpoint MiB"]
        print(f"\n### {dataset}\n\n| " + " | ".join(head) + " |\n|" + "---|" * len(head))
        for model in ("patchcore", "padim", "pvqae"):
            for short, label in BACKBONES.items():
                cell = by_key.get((model, short, dataset))
                if cell is None:
                    print(f"| {model} | {label} | " + " | ".join(["–"] * (len(head) - 2)) + " |")  # not run
                    continue
                row = [model, label]
                for metric in METRICS:
                    row += [f"{cell['categories'][cat][metric]:.3f}" for cat in categories]
                    if len(categories) > 1:
                        row.append(f"{cell['mean'][metric]:.3f}")
                ips = cell["images_per_second"]
                row += [f"{cell['train_seconds']:.0f}", f"{ips['1']:.2f} / {ips['32']:.2f}",
                        f"{cell['flops_per_image'] / 1e9:.1f}", f"{cell['peak_rss_mib']:.0f}",
                        f"{cell['checkpoint_bytes'] / 2**20:.0f}"]
                print("| " + " | ".join(row) + " |")
    dates = sorted(c["environment"]["date"] for c in cells)
    commits = sorted({c["environment"]["commit"] for c in cells})
    print(f"\n{len(cells)} cells, {dates[0]} … {dates[-1]}, commit(s) {', '.join(commits)}, "
          f"{cells[0]['environment']['device_name']}, torch {cells[0]['environment']['torch']}")


def backbone_of(cell_model: str) -> str:
    """`patchcore_lite0` and `pvqae_features_lite0` → `lite0`."""
    return next(short for short in BACKBONES if cell_model.endswith(short))


if __name__ == "__main__":
    main()
