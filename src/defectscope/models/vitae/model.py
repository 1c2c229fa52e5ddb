"""ViT-AE: a ViT encoder, a memory of normal features and coordinate attention before a
convolutional decoder, scored by reconstruction error (Yang & Guo, Sensors 2024)."""

from __future__ import annotations

import torch
from torch import Tensor

from defectscope.layers.scoring import image_score, to_model_range, to_unit_range
from defectscope.models.base import AnomalyModel, LossParts, ModelOutput, StepContext
from defectscope.models.vitae.anomaly_map import error_maps, reconstruction_anomaly_map
from defectscope.models.vitae.config import ViTAEConfig
from defectscope.models.vitae.loss import vitae_loss
from defectscope.models.vitae.network import ViTAutoEncoder


class ViTAE(AnomalyModel):
    def __init__(self, config: ViTAEConfig, image_size: int, num_classes: int = 1) -> None:
        super().__init__()
        self.config = config
        self.network = ViTAutoEncoder(config, image_size)

    def reconstruct(self, images: Tensor) -> tuple[Tensor, Tensor | None]:
        """images in [0, 1] → reconstruction in [0, 1] and the memory weights (or None)."""
        out = self.network(to_model_range(images))
        return to_unit_range(out.reconstruction), out.weights

    def training_step(self, images: Tensor, class_ids: Tensor, ctx: StepContext) -> LossParts:
        reconstruction, weights = self.reconstruct(images)
        metrics = {}
        if weights is not None:
            with torch.no_grad():
                flat = weights.flatten(0, -2)  # (vectors, N)
                metrics = {
                    "mem_active": float((flat > 0).sum(dim=1).float().mean()),  # items read per vector
                    "mem_used": float(flat.argmax(dim=1).unique().numel() / flat.shape[1]),  # share ever top-1
                }
        return vitae_loss(images, reconstruction, weights, self.config)._replace(metrics=metrics)

    def reconstruction(self, images: Tensor, class_ids: Tensor | None = None) -> Tensor:
        return self.reconstruct(images)[0]

    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        cfg = self.config
        reconstruction, _ = self.reconstruct(images)
        maps = reconstruction_anomaly_map(images, reconstruction, cfg.anomaly_map, cfg.ssim_weight, cfg.ssim_window,
                                          cfg.smoothing_sigma)
        return ModelOutput(maps, image_score(maps, cfg.image_score, cfg.topk))

    def explain_maps(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, Tensor]:
        """The reconstruction (as grey) and the two unsmoothed error terms the map adds up."""
        reconstruction, _ = self.reconstruct(images)
        maps = error_maps(images, reconstruction, self.config.ssim_window)
        return {"reconstruction": reconstruction.mean(dim=1), "L2 error": maps["l2"], "1 - SSIM": maps["ssim"]}
