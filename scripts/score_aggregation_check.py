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
from pathlib import Path

import torch
import torch.nn.functional as F
from side_by_side import print_ladder_figures, print_test_figures, score_test_images
from torch import Tensor

from defectscope.engine.checkpoint import load_checkpoint
from defectscope.layers.scoring import gaussian_smooth
from defectscope.models.patchcore.anomaly_map import patch_scores, reweighted_image_score

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
    scores, labels = score_test_images(lambda images: aggregations(model, images), data, args.test_scores)
    print(f"{args.fit_run}: {len(labels)} test images, size {data.image_size}")
    print_test_figures(scores, labels, NAMES)
    candidate = load_checkpoint(args.candidate_run / "checkpoints" / "final")
    held = candidate.model.eval()
    print_ladder_figures(lambda images: aggregations(held, images), candidate, args.candidate_run, NAMES)


if __name__ == "__main__":
    main()
