"""PatchCore with fewer feature dimensions: a PCA fitted on the bank (the good training patches it
keeps), the bank and every test patch projected onto its first components, searched exactly.

    python scripts/projection_probe.py runs/benchmarks/speed/cells/patchcore_10.mtsd.multi_class.all.s0 \
        [--dims 64 32 16] [--images 0]

Scores the cell's test images (its scores.csv, so the same images and labels as its evaluation)
through the checkpoint as `predict` does, keeping each image's patch features; then, per
dimension, the paper's image score (Eq. 7) against the projected bank. Prints a markdown table:
image AUROC and the share of defects caught at 1 % false alarms on the test ROC, both with
bootstrap intervals, and the exact search's milliseconds per image at that width. The full width
row must reproduce the cell's stored scores (its largest difference is printed): the check that
this script scores as the library does. Explores an option; nothing here is shipped.
"""

from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from defectscope.data.image_io import load_image_array
from defectscope.engine.detector import Detector
from defectscope.metrics import image_auroc, image_auroc_interval
from defectscope.metrics.operating_point import catch_rate_at, catch_rate_interval
from defectscope.models.patchcore.anomaly_map import patch_scores, reweighted_image_score
from defectscope.models.patchcore.memory_bank import MemoryBank


def test_features(cell: Path, limit: int) -> tuple[list[torch.Tensor], list[dict], Any]:
    """Every test image's (C, h, w) patch features as the checkpoint computes them, its scores.csv
    row (class, label, stored score), and the model."""
    rows = list(csv.DictReader(open(cell / "scores.csv")))
    rows = rows[:limit] if limit else rows
    detector = Detector.from_checkpoint(cell / "checkpoints" / "final", batch_size=1)
    model = detector.checkpoint.model
    kept: list[torch.Tensor] = []
    embed = model.embed

    def keeping(images: torch.Tensor) -> torch.Tensor:
        features = embed(images)
        kept.extend(features)
        return features

    model.embed = keeping  # a probe: record what the scoring path computes, change nothing
    for row in rows:
        detector.score([load_image_array(row["path"])], row["class"])
    return kept, rows, model


def scores_at(features: list[torch.Tensor], bank: torch.Tensor, neighbours: int) -> tuple[np.ndarray, float]:
    memory = MemoryBank(bank.shape[1], ratio=1.0)
    memory.bank = bank.contiguous()
    out, seconds = [], 0.0
    for f in features:
        began = time.perf_counter()
        dist, index, flat, _ = patch_scores(f[None], memory)
        seconds += time.perf_counter() - began
        out.append(float(reweighted_image_score(dist, index, flat, memory, neighbours)[0]))
    return np.array(out), 1000 * seconds / len(features)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cell", type=Path)
    p.add_argument("--dims", type=int, nargs="+", default=[64, 32, 16])
    p.add_argument("--images", type=int, default=0, help="the first N test images only (0: all)")
    args = p.parse_args()
    torch.set_num_threads(2)
    with torch.no_grad():
        features, rows, model = test_features(args.cell, args.images)
        labels = np.array([int(r["label"]) for r in rows])
        stored = np.array([float(r["score"]) for r in rows])
        classes = np.array([r["class"] for r in rows])
        bank = model.memory.bank.float()
        mean = bank.mean(dim=0)
        _, spread, axes = torch.linalg.svd(bank - mean, full_matrices=False)  # PCA of the good patches
        kept_variance = (spread**2).cumsum(0) / (spread**2).sum()
        print(f"{args.cell.name}: {len(labels)} test images ({labels.sum()} defective), bank {tuple(bank.shape)}\n")
        print("| class | feature width | variance kept | image AUROC | caught at 1 % FA (test ROC) "
              "| search ms / image |")
        print("|---|---|---|---|---|---|")
        for width in [bank.shape[1], *args.dims]:
            if width == bank.shape[1]:
                projected, kept = features, 1.0
                scores, ms = scores_at(projected, bank, model.config.num_neighbors)
                print(f"<!-- full width reproduces the stored scores: largest difference "
                      f"{np.abs(scores - stored).max():.1e} -->")
            else:
                basis = axes[:width].T  # (C, width)
                projected = [torch.einsum("chw,cd->dhw", f - mean[:, None, None], basis) for f in features]
                kept = float(kept_variance[width - 1])
                scores, ms = scores_at(projected, (bank - mean) @ basis, model.config.num_neighbors)
            for name in dict.fromkeys(classes):  # thresholds and ROCs per class, as evaluation reports them
                s, y = scores[classes == name], labels[classes == name]
                auroc, (lo, hi) = image_auroc(s, y), image_auroc_interval(s, y)
                caught, (clo, chi) = catch_rate_at(s, y, 0.01), catch_rate_interval(s, y, 0.01)
                print(f"| {name} | {width} | {kept:.3f} | {auroc:.3f} ({lo:.3f}–{hi:.3f}) "
                      f"| {caught:.3f} ({clo:.3f}–{chi:.3f}) | {ms:.1f} |")


if __name__ == "__main__":
    main()
