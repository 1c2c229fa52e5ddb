"""PatchCore settings (Roth et al., "Towards Total Recall in Industrial Anomaly Detection", CVPR 2022)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from defectscope.layers.backbones import DEFAULT_MOBILENET_WEIGHTS


@dataclass(frozen=True)
class PatchCoreConfig:
    backbone: Literal["mobilenet_v2", "resnet18", "wide_resnet50_2"] = "mobilenet_v2"
    # relative paths resolve against the current folder, like data roots
    backbone_path: str = DEFAULT_MOBILENET_WEIGHTS
    backbone_sha256: str = "published"  # "published": the file's published sum; "": no check
    pretrained: bool = True  # False: random init (tests), no file read
    layers: tuple[int, ...] = ()  # (): the two middle stages (MobileNetV2 blocks 6, 13; ResNet layer2, 3)
    neighbourhood: int = 3  # local aggregation p (paper: 3)
    coreset_ratio: float = 0.1  # share of patches kept in the bank (paper: 1-25 %, 10 % typical)
    projection_dim: int = 128  # random projection for the coreset distances (paper: 128)
    # greedy runs over blocks of this many patches as they stream in (bounded time and memory,
    # see README); 0: one greedy run over every training patch, as in the paper
    coreset_chunk: int = 16384
    # exact nearest-neighbour search: torch matrix products, or faiss's IndexFlatL2 (the
    # optional `faiss-cpu` package: pip install defectscope[faiss]); both give the same neighbours
    search: Literal["torch", "faiss"] = "torch"
    num_neighbors: int = 9  # b of the image-score re-weighting (Eq. 7); 1: plain max
    smoothing_sigma: float = 4.0
    seed: int = 0
