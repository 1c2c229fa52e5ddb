"""Would another image score from PatchCore's patch map catch more, and could `fit` tell?

    python scripts/score_aggregation_check.py FIT_RUN TEST_SCORES_CSV CANDIDATE_RUN

PatchCore's image score is Eq. 7's reweighted maximum patch distance. This scores the test images
of TEST_SCORES_CSV (a `defectscope test` folder's scores.csv, for the labels) with FIT_RUN's model
under several aggregations — Eq. 7, the plain maximum, the maximum of the smoothed map, the mean of
the 3 and the 10 farthest patches, the maximum after a 3×3 mean — and prints image AUROC and defects
caught at ≤ 1 % false alarms on the test ROC with a bootstrap interval (to judge, never to choose by); then the same
aggregations on `fit`'s ladder of synthetic defects over CANDIDATE_RUN's held-out good parts
(RUN/feature_choice/<setting>), the label-free verdict `fit` would have to act on.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from side_by_side import ScoresSideBySide
from torch import Tensor

from defectscope.data.dataset import build_datasets
from defectscope.data.image_io import load_image_array
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.synthetic import LADDER, separation_by_class, synthetic_scores
from defectscope.geometry import as_hw
from defectscope.layers.scoring import gaussian_smooth
from defectscope.metrics import image_auroc
from defectscope.metrics.operating_point import catch_rate_at, catch_rate_interval
from defectscope.models.patchcore.anomaly_map import patch_scores, reweighted_image_score
from defectscope.scoring.resize import fit_array

NAMES = ["eq7", "max", "smoothed_max", "top3_mean", "top10_mean", "mean3x3_max"]


@torch.no_grad()
def aggregations(model: torch.nn.Module, images: Tensor) -> Tensor:
    """(B, len(NAMES)) image scores from one search of the bank."""
    match = patch_scores(model.embed(images), model.memory, model.config.num_neighbors)
    d = match.distances
    flat = d.view(d.shape[0], -1)
    eq7 = reweighted_image_score(d, match.indices, match.features, model.memory, model.config.num_neighbors,
                                 match.support)
    up = F.interpolate(d[:, None], size=tuple(images.shape[-2:]), mode="bilinear", align_corners=False)[:, 0]
    smoothed = gaussian_smooth(up, model.config.smoothing_sigma).flatten(1).amax(1)
    mean3 = F.avg_pool2d(d[:, None], 3, 1, 1, count_include_pad=False).flatten(1).amax(1)
    return torch.stack([eq7, flat.amax(1), smoothed, flat.topk(3, dim=1).values.mean(1),
                        flat.topk(min(10, flat.shape[1]), dim=1).values.mean(1), mean3], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fit_run", type=Path)
    parser.add_argument("test_scores", type=Path)
    parser.add_argument("candidate_run", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_checkpoint(args.fit_run / "checkpoints" / "final")
    model, data = checkpoint.model.eval(), checkpoint.config.data
    size = as_hw(data.image_size)
    with args.test_scores.open() as f:
        rows = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in rows])

    def working(path: str) -> Tensor:  # as the datasets bring an image to the model: resized, then 8 bits
        return torch.from_numpy(fit_array(load_image_array(path), size, data.resize)[0])

    scores = np.concatenate([aggregations(model, torch.stack([working(r["path"]) for r in rows[i: i + 8]])).numpy()
                             for i in range(0, len(rows), 8)])
    print(f"{args.fit_run}: {len(rows)} test images, size {size}")
    for j, name in enumerate(NAMES):
        low, high = catch_rate_interval(scores[:, j], labels, 0.01, resamples=1000)
        print(f"  test  {name:<13} AUROC {image_auroc(scores[:, j], labels):.3f}  "
              f"caught at ≤1 % {catch_rate_at(scores[:, j], labels, 0.01):.3f} ({low:.3f}–{high:.3f})")

    candidate = load_checkpoint(args.candidate_run / "checkpoints" / "final")
    held = candidate.model.eval()

    validation = build_datasets(candidate.config.data).validation
    side_by_side = ScoresSideBySide(lambda images: aggregations(held, images))
    clean, pasted, classes = synthetic_scores(side_by_side, validation, torch.device("cpu"), 16,
                                              candidate.config.train.seed, LADDER)
    print(f"{args.candidate_run}: ladder on {len(clean)} held-out good parts")
    for j, name in enumerate(NAMES):
        caught = {kind: np.mean([c for _, c in separation_by_class(clean[:, j], p[:, j], classes).values()])
                  for kind, p in pasted.items()}
        print(f"  ladder {name:<13} caught {np.mean(list(caught.values())):.3f} ("
              + ", ".join(f"{kind} {v:.3f}" for kind, v in caught.items()) + ")")


if __name__ == "__main__":
    main()
