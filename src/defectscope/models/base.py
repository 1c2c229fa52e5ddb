"""The contract between a method and the engine: every model implements this and nothing more.

The engine knows models only through this file, so a new method plugs in by subclassing
`AnomalyModel` and adding one line to `defectscope.models.MODELS`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from torch import Tensor, nn


class ModelOutput(NamedTuple):
    """What every model returns at inference, in every mode."""

    anomaly_map: Tensor  # (B, H, W) at the input's resolution; higher = more anomalous
    image_score: Tensor  # (B,)


class LossParts(NamedTuple):
    """A loss to back-propagate plus its named parts, logged without knowing the model."""

    total: Tensor
    parts: dict[str, Tensor]


@dataclass(frozen=True)
class Phase:
    """One training stage; a model with a second stage (e.g. a prior) lists two.

    kind "train" is gradient training (training_step, optimisers). kind "collect" is a fit
    without gradients (memory banks, Gaussians): the engine runs one no-grad pass over the
    training images in a fixed order, calling `collect` per batch, then `finish_collection`;
    epochs, lr and optimisers do not apply.
    """

    name: str
    epochs: int | None = None  # None: the run's train.epochs / max_steps / max_minutes
    lr: float | None = None  # None: train.lr
    kind: Literal["train", "collect"] = "train"


class AnomalyModel(nn.Module):
    """Base class: a network that learns normality and returns anomaly maps."""

    config: Any
    # DDP must tolerate parameters without gradients (several optimiser groups or phases)
    ddp_find_unused_parameters: bool = False
    # share of the current phase done (steps, or time under a time budget), set by the engine
    # before every step; schedules (budget weights, temperatures) read it
    progress: float = 0.0

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def optimizer_groups(self, phase: str) -> dict[str, list[nn.Parameter]]:
        """Parameters per optimiser, in the order the engine steps them (e.g. generator, disc)."""
        return {"main": [p for p in self.parameters() if p.requires_grad]}

    def optimizer_lr_scale(self, phase: str, group: str) -> float:
        """Per-group learning-rate factor (e.g. a discriminator or a fine-tuned decoder)."""
        return 1.0

    def training_step(self, images: Tensor, class_ids: Tensor, step: int, phase: str, group: str) -> LossParts:
        """The loss of one optimiser group; called once per group and step, in group order.

        One forward and one backward per call keeps DDP's gradient hooks happy; a model whose
        later group reuses an earlier result (a GAN's detached reconstruction) caches it.
        """
        raise NotImplementedError

    def collect(self, images: Tensor, class_ids: Tensor, phase: str) -> None:
        """One batch of training images (in [0, 1]) for a "collect" phase; runs under no_grad."""
        raise NotImplementedError

    def finish_collection(self, phase: str) -> None:
        """Called once after the last `collect` batch of a phase (e.g. coreset, covariances)."""

    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        raise NotImplementedError

    def explain_maps(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, Tensor]:
        """Named (B, H, W) intermediate maps worth showing beside the anomaly map (optional)."""
        return {}

    def training_metrics(self) -> dict[str, float]:
        """Extra numbers to log (e.g. codebook perplexity); called on the logging steps."""
        return {}

    def extra_checkpoint_tensors(self) -> dict[str, Tensor]:
        return {}
