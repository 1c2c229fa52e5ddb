"""Choose a model's settings without test labels: every finished cell of a benchmark folder scored on
its held-out good training images as they are and with a synthetic defect pasted in, beside its
test figures.

    python scripts/feature_selection.py runs/benchmarks/patchcore_features [--only REGEX]

The criterion, from training images only (`defectscope.engine.synthetic.LADDER`: each held-out
normal image gets, in turn, a flipped rectangle cut from the next one, a small half-transparent
one, and a thin scar cut from itself): per kind, the share of pasted images above the largest
clean one of their class (what a threshold at the held-out maximum would catch) and the synthetic
AUROC (pasted against clean), each the mean over classes; then the mean over the kinds. The check, read from the
cell's results.json and never used to choose: test image AUROC and defects caught at 1 % false
alarms on the test ROC. Per dataset and group (the cell id's text before the last `_`: one
backbone), the choice `fit --features auto` makes is marked (`engine.synthetic.choose_by_ladder`:
the setting named `*_default`, the shipped one, unless another catches at least one more held-out
image per kind). Across groups (backbones) the criterion is no judge, and nothing is marked.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import torch

from defectscope.config import config_from_yaml
from defectscope.data.dataset import build_datasets
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.synthetic import LADDER, choose_by_ladder, ladder_criterion


def criterion(cell: Path) -> dict[str, float]:
    cfg = config_from_yaml((cell / "config.yaml").read_text(), str(cell / "config.yaml"))
    checkpoint = load_checkpoint(cell / "checkpoints" / "final")
    checkpoint.model.prepare()
    bundle = build_datasets(cfg.data)
    return ladder_criterion(checkpoint.model, bundle.validation, torch.device("cpu"), cfg.data.eval_batch_size,
                            cfg.train.seed)


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
        mine = [r for r in rows if r[0] == dataset]
        chosen = set()
        for group in dict.fromkeys(r[1] for r in mine):
            found = {r[2]: r[3] for r in mine if r[1] == group}
            shipped = f"{group}_default" if f"{group}_default" in found else next(iter(found))
            chosen.add(choose_by_ladder(found, shipped))
        print(f"\n### {dataset}\n")
        print("| setting | held-out good | " + " | ".join(f"{n} caught" for n in LADDER)
              + " | synthetic caught (mean) | synthetic AUROC (mean) | test image AUROC"
              " | test caught at 1 % FA (test ROC) |")
        print("|---|---|" + "---|" * len(LADDER) + "---|---|---|---|")
        for _, _, setting, found, auroc, caught in mine:
            mark = " **(chosen)**" if setting in chosen else ""
            print(f"| {setting}{mark} | {found['held_out']:.0f} | "
                  + " | ".join(f"{found[f'{n}_caught']:.3f}" for n in LADDER)
                  + f" | {found['caught']:.3f} | {found['auroc']:.3f} | {auroc} | {caught} |")


if __name__ == "__main__":
    main()
