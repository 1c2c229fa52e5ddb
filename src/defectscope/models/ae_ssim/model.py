"""AE-SSIM: a convolutional autoencoder trained and scored with structural similarity."""

from __future__ import annotations

from torch import Tensor

from defectscope.layers.scoring import image_score, to_model_range, to_unit_range
from defectscope.models.ae_ssim.anomaly_map import ssim_anomaly_map
from defectscope.models.ae_ssim.config import AESSIMConfig
from defectscope.models.ae_ssim.loss import ssim_loss
from defectscope.models.ae_ssim.network import AutoEncoder
from defectscope.models.base import AnomalyModel, LossParts, ModelOutput, StepContext


class AESSIM(AnomalyModel):
    def __init__(self, config: AESSIMConfig, image_size: int, num_classes: int = 1) -> None:
        super().__init__()
        self.config = config
        self.network = AutoEncoder(config, image_size)

    def reconstruct(self, images: Tensor) -> Tensor:
        return to_unit_range(self.network(to_model_range(images)))

    def training_step(self, images: Tensor, class_ids: Tensor, ctx: StepContext) -> LossParts:
        return ssim_loss(images, self.reconstruct(images), self.config.ssim_window)

    def reconstruction(self, images: Tensor, class_ids: Tensor | None = None) -> Tensor:
        return self.reconstruct(images)

    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        cfg = self.config
        maps = ssim_anomaly_map(images, self.reconstruct(images), cfg.ssim_window, cfg.smoothing_sigma)
        return ModelOutput(maps, image_score(maps, cfg.image_score, cfg.topk))
