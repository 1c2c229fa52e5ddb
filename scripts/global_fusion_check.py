"""Does a global score fused into PatchCore catch more at the operating point?

    python scripts/global_fusion_check.py FIT_RUN TEST_RUN [--ladder CANDIDATE_RUN]

The global score is a Gaussian on each image's pooled backbone features (the mean of every tap the
run's PatchCore uses, one vector per image; Ledoit-Wolf covariance; Rippel et al., "Modeling the
Distribution of Normal Data in Pre-Trained Deep Features for Anomaly Detection", 2020): it sees a
part whose colour or texture is off as a whole, which a nearest-patch distance may not. Fused as
the mean of the two scores' z-values, each standardised by its own out-of-fold scores of the good
training parts (PatchCore's from FIT_RUN/held_out_scores.csv, the Gaussian's from ten folds here):
no test label builds the fusion.

FIT_RUN is a `defectscope fit` run (cross-fitted), TEST_RUN its `defectscope test` folder. Prints, for
PatchCore, the Gaussian and the fusion: image AUROC, defects caught at ≤ 1 % false alarms on the test
ROC (bootstrap interval), and at the threshold the out-of-fold scores set (conformal rule, 1 %) the
defects caught and the false alarms. `--ladder` scores fit's synthetic-defect ladder on a candidate
run's held-out parts (feature_choice/<setting>) with PatchCore alone and fused: the label-free
verdict `fit` would have to act on.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import torch
from side_by_side import ScoresSideBySide, caught_by_kind, working_image
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import KFold
from torch import Tensor
from torch.utils.data import DataLoader

from defectscope.data.dataset import build_datasets
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.engine.synthetic import LADDER, synthetic_scores
from defectscope.geometry import as_hw
from defectscope.metrics import image_auroc
from defectscope.metrics.operating_point import catch_rate_at, catch_rate_interval
from defectscope.scoring.calibration import conformal_threshold

FOLDS = 10
RATE = 0.01


class GlobalGaussian:
    """Mahalanobis distance of an image's pooled features to the good parts' (shrunk covariance)."""

    def __init__(self, features: np.ndarray) -> None:
        self.fitted = LedoitWolf().fit(features)

    def __call__(self, features: np.ndarray) -> np.ndarray:
        d = features - self.fitted.location_
        return np.sqrt(np.einsum("ij,jk,ik->i", d, self.fitted.precision_, d))


def pooled(model: torch.nn.Module, images: Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.cat([m.mean((2, 3)) for m in model.features.backbone(images)], 1).numpy()


def out_of_fold(features: np.ndarray) -> np.ndarray:
    scores = np.zeros(len(features))
    for fitted, held in KFold(FOLDS, shuffle=True, random_state=0).split(features):
        scores[held] = GlobalGaussian(features[fitted])(features[held])
    return scores


def features_of(model: torch.nn.Module, paths: list[str], size: tuple[int, int], resize: str) -> np.ndarray:
    out = [pooled(model, torch.stack([working_image(p, size, resize) for p in paths[i: i + 16]]))
           for i in range(0, len(paths), 16)]
    return np.concatenate(out)


def report(name: str, test: np.ndarray, labels: np.ndarray, held_out: np.ndarray) -> None:
    low, high = catch_rate_interval(test, labels, RATE, resamples=1000)
    threshold = conformal_threshold(held_out, RATE).value
    caught, alarms = int((test[labels == 1] > threshold).sum()), int((test[labels == 0] > threshold).sum())
    print(f"{name:<30} AUROC {image_auroc(test, labels):.3f} | caught at ≤1 % (test ROC) "
          f"{catch_rate_at(test, labels, RATE):.3f} ({low:.3f}–{high:.3f}) | at the out-of-fold threshold: "
          f"caught {caught}/{int(labels.sum())}, false alarms {alarms}/{int((labels == 0).sum())}")


def z(scores: np.ndarray, normal: np.ndarray) -> np.ndarray:
    return (scores - normal.mean()) / normal.std()


def ladder(run: Path) -> None:
    checkpoint = load_checkpoint(run / "checkpoints" / "final")
    model = checkpoint.model.eval()
    bundle = build_datasets(checkpoint.config.data)
    train = np.concatenate([pooled(model, b.image) for b in DataLoader(bundle.train, batch_size=16)])
    gaussian, normal = GlobalGaussian(train), out_of_fold(train)

    def both(images: Tensor) -> np.ndarray:
        with torch.no_grad():
            patchcore = model.predict(images).image_score.numpy()
        return np.stack([patchcore, gaussian(pooled(model, images))], 1)

    clean, pasted, classes = synthetic_scores(ScoresSideBySide(both), bundle.validation, torch.device("cpu"), 16,
                                              checkpoint.config.train.seed, LADDER)
    pc_clean = clean[:, 0]
    variants = {"PatchCore": lambda s: s[:, 0],
                "fused (mean z)": lambda s: (z(s[:, 0], pc_clean) + z(s[:, 1], normal)) / 2}
    print(f"ladder on {len(clean)} held-out parts of {run}:")
    for name, combine in variants.items():
        print(f"  {name:<16} {caught_by_kind(combine(clean), {k: combine(p) for k, p in pasted.items()}, classes)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("fit_run", type=Path)
    parser.add_argument("test_run", type=Path)
    parser.add_argument("--ladder", type=Path, default=None, metavar="CANDIDATE_RUN")
    args = parser.parse_args()
    torch.set_num_threads(2)
    checkpoint = load_checkpoint(args.fit_run / "checkpoints" / "final")
    model, data = checkpoint.model.eval(), checkpoint.config.data
    size = as_hw(data.image_size)
    with (args.fit_run / "held_out_scores.csv").open() as f:
        held = list(csv.DictReader(f))
    with (args.test_run / "scores.csv").open() as f:
        test = list(csv.DictReader(f))
    labels = np.array([int(r["label"]) for r in test])
    pc_normal = np.array([float(r["score"]) for r in held])
    pc_test = np.array([float(r["score"]) for r in test])
    train = features_of(model, [r["path"] for r in held], size, data.resize)
    g_normal, g_test = out_of_fold(train), GlobalGaussian(train)(features_of(model, [r["path"] for r in test],
                                                                           size, data.resize))
    print(f"{args.fit_run}: {len(held)} good training parts, {len(test)} test images, size {size}, "
          f"taps {list(model.features.backbone.taps)}")
    report("PatchCore", pc_test, labels, pc_normal)
    report("global Gaussian", g_test, labels, g_normal)
    report("fused (mean z)", (z(pc_test, pc_normal) + z(g_test, g_normal)) / 2, labels,
           (z(pc_normal, pc_normal) + z(g_normal, g_normal)) / 2)
    if args.ladder is not None:
        ladder(args.ladder)


if __name__ == "__main__":
    main()
