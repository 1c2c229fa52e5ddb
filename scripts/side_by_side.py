"""Several image scores at once through `engine.synthetic.synthetic_scores`, which expects a model."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import numpy as np
import torch
from torch import Tensor


class ScoresSideBySide:
    """Looks like a model to the ladder; its image score is (B, k) scores side by side, so one pass
    of the ladder (the same pasted defects) serves every variant."""

    training = False

    def __init__(self, score: Callable[[Tensor], Tensor | np.ndarray]) -> None:
        self.score = score

    def eval(self) -> ScoresSideBySide:
        return self

    def train(self, mode: bool = True) -> ScoresSideBySide:
        return self

    def to(self, device: torch.device) -> ScoresSideBySide:
        return self

    def predict(self, images: Tensor) -> SimpleNamespace:
        with torch.no_grad():
            return SimpleNamespace(image_score=torch.as_tensor(self.score(images)))


def print_test_figures(scores: np.ndarray, labels: np.ndarray, names: list[str]) -> None:
    """Per column: image AUROC and defects caught at ≤ 1 % false alarms on the test ROC, with a bootstrap
    interval (to judge a variant, never to choose one)."""
    from defectscope.metrics import image_auroc
    from defectscope.metrics.operating_point import catch_rate_at, catch_rate_interval

    for j, name in enumerate(names):
        low, high = catch_rate_interval(scores[:, j], labels, 0.01, resamples=1000)
        print(f"  test  {name:<13} AUROC {image_auroc(scores[:, j], labels):.3f}  "
              f"caught at ≤1 % {catch_rate_at(scores[:, j], labels, 0.01):.3f} ({low:.3f}–{high:.3f})")


def print_ladder_figures(score: Callable[[Tensor], Tensor | np.ndarray], candidate, candidate_run,
                         names: list[str]) -> None:
    """Per column: `fit`'s ladder of synthetic defects over the held-out good parts of `candidate` (the
    checkpoint of `candidate_run`, already loaded; the label-free verdict `fit` would have to act on),
    all columns from the same pasted defects."""
    from defectscope.data.dataset import build_datasets
    from defectscope.engine.synthetic import LADDER, synthetic_scores

    validation = build_datasets(candidate.config.data).validation
    clean, pasted, classes = synthetic_scores(ScoresSideBySide(score), validation, torch.device("cpu"), 16,
                                              candidate.config.train.seed, LADDER)
    print(f"{candidate_run}: ladder on {len(clean)} held-out good parts")
    for j, name in enumerate(names):
        print(f"  ladder {name:<13} {caught_by_kind(clean[:, j], {k: p[:, j] for k, p in pasted.items()}, classes)}")


def caught_by_kind(clean: np.ndarray, pasted: dict[str, np.ndarray], classes: np.ndarray) -> str:
    """'caught MEAN (kind share, ...)': per kind the share of pasted images above the largest clean one of
    their class (the mean over classes), as `fit`'s criterion reads the ladder."""
    from defectscope.engine.synthetic import separation_by_class

    caught = {kind: np.mean([c for _, c in separation_by_class(clean, p, classes).values()])
              for kind, p in pasted.items()}
    return (f"caught {np.mean(list(caught.values())):.3f} ("
            + ", ".join(f"{kind} {v:.3f}" for kind, v in caught.items()) + ")")


def working_image(path: str, size: tuple[int, int], resize) -> Tensor:
    """An image file as the datasets bring it to the model: at the working size, then 8 bits
    (`scoring.resize.fit_array`, what every scorer sees)."""
    from defectscope.data.image_io import load_image_array
    from defectscope.scoring.resize import fit_array

    return torch.from_numpy(fit_array(load_image_array(path), size, resize)[0])


def score_test_images(score: Callable[[Tensor], Tensor | np.ndarray], data, test_scores, batch: int = 8,
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) scores of the test images a `defectscope test` scores.csv lists, each brought to the run's
    working size as every scorer does (`scoring.resize.fit_array`), and their labels."""
    import csv

    from defectscope.geometry import as_hw

    size = as_hw(data.image_size)
    with open(test_scores) as f:
        rows = list(csv.DictReader(f))
    scores = [np.asarray(score(torch.stack([working_image(r["path"], size, data.resize) for r in rows[i: i + batch]])))
              for i in range(0, len(rows), batch)]
    return np.concatenate(scores), np.array([int(r["label"]) for r in rows])
