"""PatchCore: a coreset memory bank of pretrained patch features, scored by nearest neighbour.

Fitted without gradients: one "collect" phase streams the training images' patch features
into the bank (greedy coreset per block), nothing is trained. Multi-class runs share one bank
over all classes, as in the PVQAE paper's comparison; class ids are not used.
"""

from __future__ import annotations

import torch
from torch import Tensor

from defectscope.models.base import AnomalyModel, ModelOutput, Phase
from defectscope.models.patchcore.anomaly_map import patch_scores, reweighted_image_score, upsampled_map
from defectscope.models.patchcore.config import PatchCoreConfig
from defectscope.models.patchcore.memory_bank import MemoryBank
from defectscope.models.patchcore.network import build_features

HNSW_IMAGES_PER_CALL = 4


class PatchCore(AnomalyModel):
    rectangular = True  # a bank of patches has no grid: any input size works

    def __init__(self, config: PatchCoreConfig, image_size: int | tuple[int, int], num_classes: int = 1) -> None:
        super().__init__()
        self.config = config
        self.image_size = image_size
        self.features = build_features(config)
        self.memory = MemoryBank(self.features.channels, config.coreset_ratio, config.coreset_chunk,
                                 config.projection_dim, config.seed, config.search)

    def phases(self) -> list[Phase]:
        return [Phase("memory_bank", kind="collect")]

    def embed(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] → (B, C, h, w) aggregated patch features."""
        return self.features(images)

    @torch.no_grad()
    def collect(self, images: Tensor, class_ids: Tensor, phase: str) -> None:
        f = self.embed(images)
        self.memory.add(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))

    def finish_collection(self, phase: str) -> dict[str, float]:
        self.memory.finish()
        bank = self.memory.bank
        return {
            "patches_seen": float(self.memory.patches_seen),
            "bank_size": float(len(bank)),
            "bank_mib": round(bank.numel() * bank.element_size() / 2**20, 2),
            "coreset_seconds": round(self.memory.coreset_seconds, 2),
        }

    @torch.no_grad()
    def absorb(self, images: Tensor, class_ids: Tensor) -> dict[str, tuple[float, float]]:
        """Good images the model flagged join the bank as they are (`defectscope accept`): every patch, no coreset.

        A coreset thins thousands of images' patches; a few accepted parts are kept whole, so each
        of their patches has distance 0 to the bank and the part itself scores 0.
        """
        before = len(self.memory.bank)
        if before == 0:
            raise RuntimeError("patchcore: the memory bank is empty; fit the model first (defectscope train)")
        f = self.embed(images.to(self.memory.bank.device))
        self.memory.append(f.permute(0, 2, 3, 1).reshape(-1, f.shape[1]))
        return {"bank_size": (float(before), float(len(self.memory.bank)))}

    def prepare(self, onnxruntime_threads: int | None = None, input_size: tuple[int, int] | None = None) -> None:
        super().prepare(onnxruntime_threads, input_size)
        self.memory.prepare_index()

    @property
    def images_per_call(self) -> int | None:
        """One with the exact search: it holds a block of bank distances per image (a batch of 8:
        8 times the memory, and slower). With HNSW, four: the exact pass over the bank is shared and
        the backbone keeps its per-image time up to four 256-px images, then outgrows the caches
        (EfficientNet-Lite0 on 2 cores: 17.5, 17.3 and 26.1 ms per image at 1, 4 and 8;
        docs/results/speed.md)."""
        return HNSW_IMAGES_PER_CALL if self.memory.approximate else 1

    @torch.no_grad()
    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        match = patch_scores(self.embed(images), self.memory, self.config.num_neighbors)
        image = reweighted_image_score(match.distances, match.indices, match.features, self.memory,
                                       self.config.num_neighbors, match.support)
        maps = upsampled_map(match.distances, images.shape[-2:], self.config.smoothing_sigma)
        return ModelOutput(maps, image)
