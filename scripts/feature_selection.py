"""Choose a model's settings without test labels: every finished cell of a benchmark folder scored on
its held-out good training images as they are and with a synthetic defect pasted in, beside its
test figures.

    python scripts/feature_selection.py runs/benchmarks/patchcore_features [--only REGEX]

The criterion, from training images only (`defectscope.engine.synthetic`: each held-out normal
image gets a flipped rectangle cut from the next one): the synthetic AUROC (pasted against clean,
per class, then the mean over classes) and the share of pasted images above the largest clean one
of their class (what a threshold at the held-out maximum would catch). The check, read from the
cell's results.json and never used to choose: test image AUROC and defects caught at 1 % false
alarms on the test ROC. Per dataset and group (the cell id's text before the last `_`: one
backbone), the setting with the highest synthetic catch rate is marked (ties: the synthetic AUROC,
then the setting named `*_default`, the shipped one).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
import torch

from defectscope.config import config_from_yaml
from defectscope.data.dataset import build_datasets
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.synthetic import synthetic_scores
from defectscope.metrics import image_auroc


def criterion(cell: Path) -> dict[str, float]:
    cfg = config_from_yaml((cell / "config.yaml").read_text(), str(cell / "config.yaml"))
    checkpoint = load_checkpoint(cell / "checkpoints" / "final")
    bundle = build_datasets(cfg.data)
    clean, pasted, classes = synthetic_scores(checkpoint.model, bundle.validation, torch.device("cpu"),
                                              cfg.data.eval_batch_size, cfg.train.seed)
    aurocs, caught = [], []
    for cid in np.unique(classes):
        c, p = clean[classes == cid], pasted[classes == cid]
        aurocs.append(image_auroc(np.concatenate([c, p]), np.r_[np.zeros(len(c)), np.ones(len(p))]))
        caught.append(float((p > c.max()).mean()))
    return {"synthetic_auroc": float(np.mean(aurocs)), "synthetic_caught": float(np.mean(caught)),
            "held_out": int(len(clean))}


def test_figures(cell: Path) -> tuple[str, str]:
    results = json.loads((cell / "results.json").read_text())
    categories = results["categories"]
    intervals = results.get("intervals", {})

    def shown(metric: str) -> str:
        mean = results["mean"][metric]
        if len(categories) == 1:
            name = next(iter(categories))
            low, high = intervals.get(name, {}).get(metric, (float("nan"), float("nan")))
            return f"{mean:.3f} ({low:.3f}–{high:.3f})"
        return f"{mean:.3f} ({', '.join(f'{k} {v[metric]:.3f}' for k, v in categories.items())})"

    return shown("image_auroc"), shown("catch_1pct")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", type=Path)
    p.add_argument("--only", default=".*", help="regular expression on cell ids")
    args = p.parse_args()
    torch.set_num_threads(2)
    rows = []
    for cell_file in sorted(args.folder.glob("cells/*/results.json")):
        cell = cell_file.parent
        if not re.search(args.only, cell.name):
            continue
        setting, dataset = cell.name.split(".")[:2]
        found = criterion(cell)
        rows.append((dataset, setting.rsplit("_", 1)[0], setting, found, *test_figures(cell)))
        print(cell.name, found, flush=True)
    for dataset in dict.fromkeys(r[0] for r in rows):
        print(f"\n### {dataset}\n")
        print("| setting | held-out good | synthetic AUROC | synthetic caught above the held-out max "
              "| test image AUROC | test caught at 1 % FA (test ROC) |")
        print("|---|---|---|---|---|---|")
        mine = [r for r in rows if r[0] == dataset]
        chosen = {g: max((r for r in mine if r[1] == g),
                         key=lambda r: (r[3]["synthetic_caught"], r[3]["synthetic_auroc"],
                                        r[2].endswith("_default")))[2]
                  for g in dict.fromkeys(r[1] for r in mine)}
        for _, group, setting, found, auroc, caught in mine:
            mark = " **(chosen)**" if chosen[group] == setting else ""
            print(f"| {setting}{mark} | {found['held_out']} | {found['synthetic_auroc']:.3f} "
                  f"| {found['synthetic_caught']:.3f} | {auroc} | {caught} |")


if __name__ == "__main__":
    main()
