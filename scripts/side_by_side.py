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
