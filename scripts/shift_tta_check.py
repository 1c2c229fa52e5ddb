"""Would PatchCore's image score averaged over half-grid-step shifts of the image catch more, and could `fit` tell?

    python scripts/shift_tta_check.py FIT_RUN TEST_SCORES_CSV CANDIDATE_RUN [--shift 4]

A patch grid 8 px apart sees a speck differently as it falls on or between its patches, and a good
part's score moves with that too. This scores the image as it is and shifted by `--shift` px
(half the stride-8 grid) down, right, and both (the uncovered band reflected from the image), and
compares the run's image score (Eq. 7) with the mean over two positions (as is, both ways), the mean
over all four and their minimum (a defect stays far in every position; a good part's high score
from where the grid fell may not): first on the test images of TEST_SCORES_CSV (a `defectscope
test` folder's scores.csv: image AUROC and defects caught at ≤ 1 % false alarms with a bootstrap
interval, to judge, never to choose by), then on `fit`'s ladder of synthetic defects over
CANDIDATE_RUN's held-out good parts (RUN/feature_choice/<setting>), the label-free verdict `fit`
would have to act on. Each variant costs the scores' positions times a part's time.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F
from side_by_side import print_ladder_figures, print_test_figures, score_test_images
from torch import Tensor

from defectscope.engine.checkpoint import load_checkpoint

NAMES = ["eq7", "mean2", "mean4", "min4"]


def shifted(images: Tensor, down: int, right: int) -> Tensor:
    """The content moved `down` and `right` px, the uncovered band filled by reflection, the size kept."""
    if down == right == 0:
        return images
    height, width = images.shape[-2:]
    return F.pad(images, (right, 0, down, 0), mode="reflect")[..., :height, :width]


@torch.no_grad()
def variants(model: torch.nn.Module, images: Tensor, shift: int) -> Tensor:
    """(B, len(NAMES)) image scores: as is, the means over two and four positions, the minimum over four."""
    positions = [(0, 0), (shift, 0), (0, shift), (shift, shift)]
    scores = torch.stack([model.predict(shifted(images, dy, dx)).image_score for dy, dx in positions], 1)
    return torch.stack([scores[:, 0], scores[:, [0, 3]].mean(1), scores.mean(1), scores.amin(1)], 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fit_run", type=Path)
    parser.add_argument("test_scores", type=Path)
    parser.add_argument("candidate_run", type=Path)
    parser.add_argument("--shift", type=int, default=4, help="px; half the finest tap's stride (8) by default")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_checkpoint(args.fit_run / "checkpoints" / "final")
    model, data = checkpoint.model.eval(), checkpoint.config.data
    scores, labels = score_test_images(lambda images: variants(model, images, args.shift), data, args.test_scores)
    print(f"{args.fit_run}: {len(labels)} test images, size {data.image_size}, shift {args.shift} px")
    print_test_figures(scores, labels, NAMES)
    candidate = load_checkpoint(args.candidate_run / "checkpoints" / "final")
    held = candidate.model.eval()
    print_ladder_figures(lambda images: variants(held, images, args.shift), candidate, args.candidate_run, NAMES)


if __name__ == "__main__":
    main()
