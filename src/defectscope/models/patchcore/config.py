"""PatchCore settings (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Annotated, Literal

from defectscope.checks import Check, Count, OptionalCount, Seed, Side, Sigma, Width
from defectscope.layers.backbones.config import BackboneConfig


@dataclass(frozen=True)
class TorchSearch:
    """Exact: every bank patch compared by torch matrix products; no extra package, and what an
    exported graph does whatever the search."""

    kind: Literal["torch"] = "torch"


@dataclass(frozen=True)
class FaissSearch:
    """Exact, with faiss's IndexFlatL2 (`pip install "defectscope[faiss]"`): the same neighbours."""

    kind: Literal["faiss"] = "faiss"


@dataclass(frozen=True)
class HnswSearch:
    """faiss's HNSW graph (`pip install "defectscope[faiss]"`) finds each patch's neighbour
    approximately; each image's farthest patches are then searched exactly until no other can be
    farther, so the image score is the exact search's and only the map may differ (a patch whose
    neighbour the graph missed reads a little farther). Without that step the graph alone lost
    0.03–0.48 image AUROC (it can miss even a bank patch searching for itself: docs/results/speed.md).
    The graph is built when a scorer (predict, serve) prepares the model or a fitted bank is first
    searched, on one thread so every build is the same."""

    kind: Literal["hnsw"] = "hnsw"
    links: Count = 16  # neighbours per graph node (faiss M): more, better recall, slower build and search
    candidates: Count = 16  # candidates kept while searching (faiss efSearch): the recall / speed knob
    build_candidates: Count = 40  # candidates while building (faiss efConstruction; faiss's default)


Search = TorchSearch | FaissSearch | HnswSearch


@dataclass(frozen=True)
class PatchCoreConfig:
    # taps (): the two middle stages, the last block at stride 8 and 16 (paper: ResNet layer2, 3)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neighbourhood: Side = 3  # local aggregation p (paper: 3)
    # share of patches kept in the bank (paper: 1-25 %, 10 % typical); > 0, or the bank is empty
    coreset_ratio: Annotated[float, Check(low=0, high=1, low_open=True)] = 0.1
    projection_dim: Width = 128  # random projection for the coreset distances (paper: 128)
    # greedy runs over blocks of this many patches as they stream in (bounded time and memory,
    # see README); 0: one greedy run over every training patch, as in the paper
    coreset_chunk: OptionalCount = 16384
    # nearest-neighbour search: `torch` or `faiss` (exact), `hnsw` (approximate, exact image
    # scores; 7x the images/s end to end on a 70,000-patch bank: docs/results/speed.md)
    search: Search = field(default_factory=TorchSearch)
    num_neighbors: Count = 9  # b of the image-score re-weighting (Eq. 7); 1: plain max
    smoothing_sigma: Sigma = 4.0
    seed: Seed = 0

    def fitted_on_share(self, share: float) -> PatchCoreConfig:
        """The settings for a bank fitted on `share` of the images that holds as many patches as this
        one fitted on all of them (cross-fitting's fold models: engine/crossfit.py)."""
        return dataclasses.replace(self, coreset_ratio=min(1.0, self.coreset_ratio / share))
