"""VQ-E: VQ-VAE with a single static-resolution codebook, the PVQAE paper's standard-VQ baseline."""

from __future__ import annotations

from torch import Tensor

from defectscope.layers.scoring import image_score, to_model_range, to_unit_range
from defectscope.models.base import AnomalyModel, LossParts, ModelOutput, StepContext
from defectscope.models.vq_e.anomaly_map import l2_anomaly_map
from defectscope.models.vq_e.config import VQEConfig
from defectscope.models.vq_e.loss import vqvae_loss
from defectscope.models.vq_e.network import VQVAE


class VQE(AnomalyModel):
    def __init__(self, config: VQEConfig, image_size: int, num_classes: int = 1) -> None:
        super().__init__()
        if image_size % config.downsample:
            raise ValueError(
                f"vq_e: image_size {image_size} is not divisible by downsample {config.downsample}"
            )
        self.config = config
        self.network = VQVAE(config)

    def training_step(self, images: Tensor, class_ids: Tensor, ctx: StepContext) -> LossParts:
        x = to_model_range(images)
        out = self.network(x)
        loss = vqvae_loss(x, out.reconstruction, out.quantizer)
        metrics = {"perplexity": float(out.quantizer.perplexity), "live_codes": float(out.quantizer.live_codes)}
        return loss._replace(metrics=metrics)

    def reconstruction(self, images: Tensor, class_ids: Tensor | None = None) -> Tensor:
        return to_unit_range(self.network(to_model_range(images)).reconstruction)

    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        reconstruction = to_unit_range(self.network(to_model_range(images)).reconstruction)
        maps = l2_anomaly_map(images, reconstruction, self.config.smoothing_sigma)
        return ModelOutput(maps, image_score(maps, self.config.image_score, self.config.topk))
