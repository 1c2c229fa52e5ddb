"""Where a run's image scores go wrong: per-type AUROC, where map maxima sit, the top normal tiles.

Used for docs/results/pvqae.md. Reads a run's `scores.csv` and final checkpoint:

    python scripts/normal_false_alarms.py runs/pvqae_features_mtsd \
        [--against runs/patchcore_mtsd] [--picture docs/results/img/NAME.png]

Prints each defect type's image AUROC against the normal test tiles, the share of normal and
defective tiles whose map maximum lies within 16 px of the border (a 16 px band is 23 % of a
256 px tile), the share of defective tiles whose maximum lies within 8 px of the ground truth,
and, with --against, the Spearman correlation of the two runs' scores on normal and on
defective tiles and where the other run ranks this run's ten highest-scoring normal tiles.
"""

from __future__ import annotations

import argparse
import collections
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from defectscope.data.dataset import AnomalyDataset, build_records
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.inference import torch_network, viewing_of
from defectscope.geometry import Box
from defectscope.scoring.path import score_canvases

BORDER_PX, NEAR_PX = 16, 8


def read_scores(run: Path) -> dict[str, tuple[float, int, str]]:
    with open(run / "scores.csv", newline="") as f:
        return {r["path"]: (float(r["score"]), int(r["label"]), r["defect_type"]) for r in csv.DictReader(f)}


def per_type_auroc(scores: dict[str, tuple[float, int, str]]) -> dict[str, float]:
    normal = [s for s, label, _ in scores.values() if label == 0]
    by_type = collections.defaultdict(list)
    for s, label, kind in scores.values():
        if label == 1:
            by_type[kind].append(s)
    return {kind: roc_auc_score([0] * len(normal) + [1] * len(s), normal + s) for kind, s in sorted(by_type.items())}


def scored(checkpoint, samples) -> tuple[np.ndarray, np.ndarray]:
    """Maps and scores of working-size samples through the scoring path the run was evaluated with."""
    images = [s.image.numpy() for s in samples]
    boxes = [Box(0, 0, *image.shape[-2:]) for image in images]
    maps, scores = score_canvases(torch_network(checkpoint.model, torch.device("cpu")), images, boxes,
                                  np.array([s.class_id for s in samples]), viewing_of(checkpoint.config.data), 16,
                                  checkpoint.standardizer)
    return np.stack(maps), scores


@torch.no_grad()
def maxima(run: Path) -> tuple[list[dict], object]:
    checkpoint = load_checkpoint(run / "checkpoints" / "final")
    checkpoint.model.eval()
    records = build_records(checkpoint.config.data).test
    data = AnomalyDataset(records, {n: i for i, n in enumerate(checkpoint.class_names)},
                          checkpoint.config.data.image_size, None)
    found = []
    for start in range(0, len(data), 16):
        samples = [data[i] for i in range(start, min(start + 16, len(data)))]
        maps, _ = scored(checkpoint, samples)
        for sample, amap in zip(samples, maps, strict=True):
            row, col = divmod(int(amap.argmax()), amap.shape[-1])
            side = amap.shape[-1]
            near = None
            if sample.label == 1:
                mask = sample.mask.reshape(1, 1, *sample.mask.shape[-2:]).float()
                near = bool(F.max_pool2d(mask, 2 * NEAR_PX + 1, 1, NEAR_PX)[0, 0, row, col] > 0)
            found.append({"path": sample.path, "label": sample.label, "near_truth": near,
                          "border": min(row, col, side - 1 - row, side - 1 - col) < BORDER_PX})
    return found, (checkpoint, data)


def picture(run_scores, loaded, path: Path, count: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    checkpoint, data = loaded
    top = sorted((p for p, (_, label, _) in run_scores.items() if label == 0), key=lambda p: -run_scores[p][0])[:count]
    index = {s: i for i, s in enumerate(str(r.image_path) for r in data.records)}
    samples = [data[index[p]] for p in top]
    maps, scores = scored(checkpoint, samples)
    top_value = float(maps.max())
    fig, axes = plt.subplots(2, count, figsize=(2.6 * count, 5.4))
    for k, sample in enumerate(samples):
        axes[0, k].imshow(sample.image.permute(1, 2, 0).clamp(0, 1))
        axes[0, k].set_title(Path(sample.path).name, fontsize=7)
        axes[1, k].imshow(maps[k], vmin=0, vmax=top_value)
        axes[1, k].set_title(f"image score {float(scores[k]):.4f}", fontsize=8)
    for ax in axes.flat:
        ax.axis("off")
    fig.suptitle("the highest-scoring normal test tiles and their maps (shared colour scale)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path)
    parser.add_argument("--against", type=Path)
    parser.add_argument("--picture", type=Path)
    args = parser.parse_args()
    scores = read_scores(args.run)
    print("image AUROC by defect type:", {k: round(v, 3) for k, v in per_type_auroc(scores).items()})
    found, loaded = maxima(args.run)
    normal = [f for f in found if f["label"] == 0]
    defective = [f for f in found if f["label"] == 1]
    share = {name: sum(f["border"] for f in group) / len(group) for name, group in
             (("normal", normal), ("defective", defective))}
    print(f"map maximum within {BORDER_PX} px of the border: normal {share['normal']:.2f},"
          f" defective {share['defective']:.2f}")
    print(f"defective tiles whose maximum is within {NEAR_PX} px of the ground truth:"
          f" {sum(f['near_truth'] for f in defective) / len(defective):.2f}")
    if args.against:
        other = read_scores(args.against)
        for label, name in ((0, "normal"), (1, "defective")):
            paths = [p for p in scores if scores[p][1] == label and p in other]
            rho = spearmanr([scores[p][0] for p in paths], [other[p][0] for p in paths]).correlation
            print(f"Spearman with {args.against.name} on {name} tiles: {rho:.2f}")
        ranked = sorted((p for p in other if other[p][1] == 0), key=lambda p: -other[p][0])
        rank = {p: i + 1 for i, p in enumerate(ranked)}
        top = sorted((p for p in scores if scores[p][1] == 0), key=lambda p: -scores[p][0])[:10]
        print(f"this run's ten highest normal tiles, ranked by {args.against.name} among {len(ranked)} normals:",
              [rank[p] for p in top])
    if args.picture:
        picture(scores, loaded, args.picture)
        print("picture:", args.picture)


if __name__ == "__main__":
    main()
