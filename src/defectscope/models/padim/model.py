"""PaDiM: a Gaussian per patch position over pretrained features, scored by Mahalanobis distance.

Fitted without gradients in one "collect" phase. Multi-class runs fit one set of Gaussians
over all classes, as in the PVQAE paper's comparison; class ids are not used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from defectscope.layers.scoring import image_score
from defectscope.models.base import AnomalyModel, ModelOutput, Phase
from defectscope.models.padim.anomaly_map import upsampled_map
from defectscope.models.padim.config import PaDiMConfig
from defectscope.models.padim.gaussian import PositionGaussians
from defectscope.models.padim.network import build_features


class PaDiM(AnomalyModel):
    rectangular = True

    def __init__(self, config: PaDiMConfig, image_size: int | tuple[int, int], num_classes: int = 1) -> None:
        super().__init__()
        self.config = config
        self.features = build_features(config)
        total = self.features.channels
        if not 0 < config.n_features <= total:
            raise ValueError(f"padim: n_features must be in 1…{total} (the tapped channels), got {config.n_features}")
        g = torch.Generator().manual_seed(config.seed)
        # random dimensionality reduction (paper Sec. 3.2): a fixed random subset of channels
        self.register_buffer("channels", torch.randperm(total, generator=g)[: config.n_features].sort().values)
        height, width = (image_size, image_size) if isinstance(image_size, int) else image_size
        self.grid = (self.features.grid(height), self.features.grid(width))
        self.gaussians = PositionGaussians(self.grid[0] * self.grid[1], config.n_features, config.regularisation)

    def phases(self) -> list[Phase]:
        return [Phase("gaussians", kind="collect")]

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] → (B, h·w, d) features of the chosen channels."""
        f = self.features(images).index_select(1, self.channels)
        if tuple(f.shape[-2:]) != self.grid:
            raise ValueError(f"padim: fitted for a {self.grid[0]}×{self.grid[1]} grid, got {tuple(f.shape[-2:])}")
        return f.flatten(2).transpose(1, 2)

    @torch.no_grad()
    def collect(self, images: Tensor, class_ids: Tensor, phase: str) -> None:
        self.gaussians.add(self.embed(images))

    def finish_collection(self, phase: str) -> dict[str, float]:
        self.gaussians.finish()
        g = self.gaussians
        return {"gaussian_mib": round((g.mean.numel() + g.inv_cov.numel()) * 4 / 2**20, 2)}

    @torch.no_grad()
    def absorb(self, images: Tensor, class_ids: Tensor) -> dict[str, tuple[float, float]]:
        """Good images the model flagged join every position's Gaussian (`defectscope accept`): n, μ and Σ updated."""
        before = int(self.gaussians.samples)
        self.gaussians.absorb(self.embed(images.to(self.gaussians.mean.device)))
        return {"samples": (float(before), float(self.gaussians.samples))}

    @torch.no_grad()
    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        d = self.gaussians.mahalanobis(self.embed(images)).view(-1, *self.grid)
        maps = upsampled_map(d, images.shape[-2:], self.config.smoothing_sigma)
        return ModelOutput(maps, image_score(maps, "max"))
