"""The contract between a method and the engine: every model implements this and nothing more.

The engine knows models only through this file, so a new method plugs in by subclassing
`AnomalyModel` and adding one line to `defectscope.models.MODELS`. A model keeps no state
between calls except its parameters and buffers: where a step stands (its index, the share of
the phase done, what an earlier optimiser group of the same step produced) comes in a
`StepContext`, and what a step wants logged or handed on goes out in its `LossParts`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from torch import Tensor, nn

from defectscope.layers.feature_cache import FeatureCache
from defectscope.layers.patch_features import PatchFeatures

_EMPTY: Mapping[str, Any] = MappingProxyType({})


class ModelOutput(NamedTuple):
    """What every model returns at inference, in every mode."""

    anomaly_map: Tensor  # (B, H, W) at the input's resolution; higher = more anomalous
    image_score: Tensor  # (B,)


class LossParts(NamedTuple):
    """A loss to back-propagate, its named parts, and what else the step reports.

    `metrics` are numbers to log that are not losses (a temperature, codebook usage);
    `handoff` holds detached results a later optimiser group of the same step reads (a GAN's
    reconstruction for its discriminator), passed on by the engine in `StepContext.handoff`.
    """

    total: Tensor
    parts: Mapping[str, Tensor]
    metrics: Mapping[str, float] = _EMPTY
    handoff: Mapping[str, Any] = _EMPTY


@dataclass(frozen=True)
class StepContext:
    """Where a training step stands, passed in by the engine on every call."""

    step: int = 0  # steps done in this phase before this one
    progress: float = 0.0  # share of the phase done in [0, 1] (steps, or time under a time budget)
    phase: str = "main"
    group: str = "main"
    handoff: Mapping[str, Any] = field(default_factory=lambda: _EMPTY)  # what earlier groups of this step handed on


@dataclass(frozen=True)
class OptimizerGroup:
    """Parameters stepped by one optimiser, with its own lr factor and Adam betas."""

    params: list[nn.Parameter]
    lr_scale: float = 1.0
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass(frozen=True)
class Phase:
    """One training stage; a model with a second stage (e.g. a prior) lists two.

    kind "train" is gradient training (training_step, optimisers). kind "collect" is a fit
    without gradients (memory banks, Gaussians): the engine runs one no-grad pass over the
    training images in a fixed order, calling `collect` per batch, then `finish_collection`;
    epochs, lr and optimisers do not apply. `frozen` names sub-modules the engine keeps in eval
    mode throughout the phase (their BatchNorm statistics stay as an earlier phase left them).
    """

    name: str
    epochs: int | None = None  # None: the run's train.epochs / max_steps / max_minutes
    lr: float | None = None  # None: train.lr
    kind: Literal["train", "collect"] = "train"
    frozen: tuple[str, ...] = field(default=())


@runtime_checkable
class Absorbing(Protocol):
    """A model whose normal is statistics that more good images extend (PatchCore, PaDiM, the mean image).

    `absorb` takes working-size images (or tiles) of good parts into the fit without fitting again
    and says what changed (name → before, after); `defectscope accept` and `serve --allow-feedback`.
    """

    def absorb(self, images: Tensor, class_ids: Tensor) -> dict[str, tuple[float, float]]: ...


class AnomalyModel(nn.Module):
    """Base class: a network that learns normality and returns anomaly maps."""

    config: Any
    # DDP must tolerate parameters without gradients (several optimiser groups or phases)
    ddp_find_unused_parameters: bool = False
    # takes image_size as (height, width) with height ≠ width; a model with a square grid (a ViT's
    # positions, a spiral prior) does not, and sees non-square images only as square tiles
    rectangular: bool = False

    def phases(self) -> list[Phase]:
        return [Phase("main")]

    def optimizer_groups(self, phase: str) -> dict[str, OptimizerGroup]:
        """One optimiser per group, stepped in this order within a training step."""
        return {"main": OptimizerGroup([p for p in self.parameters() if p.requires_grad])}

    def start_phase(self, phase: str) -> None:
        """Called once when a phase starts from its first step (not when a run resumes inside it)."""

    def training_step(self, images: Tensor, class_ids: Tensor, ctx: StepContext) -> LossParts:
        """The loss of one optimiser group; called once per group and step, in group order.

        One forward and one backward per call keeps DDP's gradient hooks happy; a later group
        that needs an earlier group's result reads it from `ctx.handoff`.
        """
        raise NotImplementedError

    def collect(self, images: Tensor, class_ids: Tensor, phase: str) -> None:
        """One batch of training images (in [0, 1]) for a "collect" phase; runs under no_grad."""
        raise NotImplementedError

    def finish_collection(self, phase: str) -> dict[str, float]:
        """Called once after the last `collect` batch of a phase (e.g. coreset, covariances).

        Returns numbers worth logging about the fit (bank size, coreset time).
        """
        return {}

    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        raise NotImplementedError

    def prepare(self, onnxruntime_threads: int | None = None, input_size: tuple[int, int] | None = None) -> None:
        """Build what scoring needs once the model is on its device (a search index), so the first
        image does not wait for it. `onnxruntime_threads`: a model whose `features` are frozen
        `PatchFeatures` computes them in onnxruntime with that many threads (None: in torch), its
        graph for `input_size` (height, width) images built now."""
        features = getattr(self, "features", None)
        if isinstance(features, PatchFeatures):
            features.use_onnxruntime(onnxruntime_threads, input_size)

    @contextmanager
    def sharing_features(self, cache: FeatureCache | None) -> Iterator[None]:
        """Inside the block, frozen `PatchFeatures` of this model take the maps of images seen before from
        `cache`: models fitted to the same images one after another (cross-fitting's folds) run the
        backbone once. None: nothing changes."""
        modules = [m for m in self.modules() if isinstance(m, PatchFeatures)] if cache is not None else []
        for module in modules:
            module.share_cache(cache)
        try:
            yield
        finally:
            for module in modules:
                module.share_cache(None)

    @property
    def feature_runtime(self) -> str:
        """What computes the features when scoring: onnxruntime where `prepare` set it, else torch."""
        features = getattr(self, "features", None)
        if not isinstance(features, PatchFeatures) or features.onnx is None:
            return "torch"
        on_cpu = all(p.device.type == "cpu" for p in features.parameters())
        return "onnxruntime" if on_cpu else "torch"  # moved to a GPU since: torch runs them there

    @property
    def images_per_call(self) -> int | None:
        """The most images one `predict` call should take (None: any batch), where larger calls cost
        more per image: a block held per image (an exact bank search), caches outgrown."""
        return None

    def explain_maps(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, Tensor]:
        """Named (B, H, W) intermediate maps worth showing beside the anomaly map (optional)."""
        return {}

    def reconstruction(self, images: Tensor, class_ids: Tensor | None = None) -> Tensor | None:
        """The image a reconstruction model rebuilds, (B, 3, H, W) in [0, 1]; None for the others.

        The engine compares it with the class's mean training image on held-out normal images:
        a model that rebuilds them no better than that mean has learned nothing useful.
        """
        return None

    def diagnose(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, float]:
        """Numbers on a batch of held-out normal images that say whether training worked, each a mean
        over the batch's images (the engine averages them over every held-out image)."""
        return {}

    def diagnosis_notes(self, numbers: dict[str, float]) -> list[str]:
        """Sentences a user must read, from `diagnose`'s numbers over all held-out images: a verdict
        on one batch could contradict the whole set's figures."""
        return []
