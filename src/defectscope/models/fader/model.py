"""FADeR on EAR's reconstruction-by-inpainting U-Net: the model the engine trains.

Phase "main" trains the U-Net to recover normal images from their obfuscated version (mosaic
inside one deterministic binary mask). Phase "fader" (unless `fader: none`) freezes the encoder,
trains the patch-error predictor with the ranking loss (group "fader") and fine-tunes the
decoder on the attenuated skips at `fader.decoder_lr_scale` × the learning rate (group "decoder").
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from defectscope.layers.scoring import image_score, to_model_range
from defectscope.models.base import AnomalyModel, LossParts, ModelOutput, OptimizerGroup, Phase, StepContext
from defectscope.models.fader.anomaly_map import anomaly_map
from defectscope.models.fader.config import FADeRConfig, FaderStage, HardAttenuation, NoBinaryMask
from defectscope.models.fader.loss import all_pairs, patch_errors, random_pairs, ranking_loss, reconstruction_loss
from defectscope.models.fader.masks import binary_patch_mask, build_mask_source
from defectscope.models.fader.mosaic import check_divisible, grid_to_pixels, obfuscate
from defectscope.models.fader.predictor import attenuation_mask, build_predictor, tokenize
from defectscope.models.fader.unet import InpaintingUNet


def _unit(x: Tensor) -> Tensor:
    """[-1, 1] network output → [0, 1] without clamping (tanh keeps it inside)."""
    return (x + 1) * 0.5


class Explanation(NamedTuple):
    binary_mask: Tensor  # (B, 1, h, w) EAR's mask on the patch grid
    obfuscated: Tensor  # (B, 3, H, W) the U-Net's input I'
    attenuation: Tensor | None  # (B, 1, h, w) FADeR's mask (None without FADeR)
    plain: Tensor  # (B, 3, H, W) reconstruction without attenuation, [0, 1]
    reconstruction: Tensor  # (B, 3, H, W) the scored reconstruction, [0, 1]
    anomaly_map: Tensor  # (B, H, W)


class FADeR(AnomalyModel):
    ddp_find_unused_parameters = True  # phase "fader" leaves the encoder idle

    def __init__(self, config: FADeRConfig, image_size: int, num_classes: int = 1) -> None:
        super().__init__()
        cfg = self.config = config
        depth = len(cfg.channels)
        if depth < 2:
            raise ValueError("fader: channels needs at least two depths")
        if image_size % 2**depth:
            raise ValueError(f"fader: image_size {image_size} must be divisible by 2^depth = {2**depth}")
        check_divisible(image_size, cfg.mosaic_scale)
        self.grid = (image_size // cfg.mosaic_scale,) * 2
        self.unet = InpaintingUNet(cfg)
        # the FADeR stage's settings, None for the plain inpainting U-Net
        self.stage: FaderStage | None = cfg.fader if isinstance(cfg.fader, FaderStage) else None
        self.predictor = None
        if self.stage is not None:
            self.predictor = build_predictor(self.stage, cfg.mosaic_scale, self.grid[0] * self.grid[1])
        self.mask_source = build_mask_source(cfg.mask, cfg.mosaic_scale, self.grid, self._reconstruct_plain)
        self.target_decoder: nn.Module | None = None
        if self.stage is not None and self.stage.target_decoder == "frozen":
            # Filled from the pretrained decoder when phase "fader" starts; the flag travels in the
            # checkpoint so that scoring before that phase uses the live decoder.
            self.target_decoder = copy.deepcopy(self.unet.decoder).requires_grad_(False)
            self.register_buffer("target_decoder_filled", torch.zeros((), dtype=torch.bool))

    # --- engine contract ----------------------------------------------------------------

    def phases(self) -> list[Phase]:
        main = Phase("main", epochs=self.config.inpaint_epochs or None)
        stage = self.stage
        if stage is None:
            return [main]
        # the encoder is frozen with its BN statistics; so is the target decoder's copy
        frozen = ("unet.encoder",) + (("target_decoder",) if self.target_decoder is not None else ())
        return [main, Phase("fader", epochs=stage.epochs or None, lr=stage.lr or None, frozen=frozen)]

    def optimizer_groups(self, phase: str) -> dict[str, OptimizerGroup]:
        if phase == "fader":
            return {"fader": OptimizerGroup(list(self.predictor.parameters())),
                    "decoder": OptimizerGroup(list(self.unet.decoder.parameters()), self.stage.decoder_lr_scale)}
        return {"main": OptimizerGroup(list(self.unet.parameters()))}

    def start_phase(self, phase: str) -> None:
        if phase == "fader" and self.target_decoder is not None:
            self.target_decoder.load_state_dict(self.unet.decoder.state_dict())
            self.target_decoder_filled.fill_(True)

    def training_step(self, images: Tensor, class_ids: Tensor, ctx: StepContext) -> LossParts:
        if ctx.group == "fader":
            return self._fader_step(images)
        if ctx.group == "decoder":
            return self._decoder_step(images, ctx.handoff or self._fader_step(images).handoff)
        return self._inpaint_step(images)

    @torch.no_grad()
    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        out = self.explain(images)
        return ModelOutput(out.anomaly_map, image_score(out.anomaly_map, self.config.image_score, self.config.topk))

    @torch.no_grad()
    def explain_maps(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, Tensor]:
        """EAR's binary mask, FADeR's attenuation (1 = kept) and the reconstruction's L2 error."""
        out = self.explain(images)
        m = self.config.mosaic_scale
        maps = {"binary mask": grid_to_pixels(out.binary_mask, m)[:, 0]}
        if out.attenuation is not None:
            maps["FADeR mask"] = grid_to_pixels(out.attenuation, m)[:, 0]
        maps["L2 error"] = (images - out.reconstruction).pow(2).sum(dim=1)
        return maps

    # --- pieces -------------------------------------------------------------------------

    def _plain_decoder(self) -> nn.Module:
        """The decoder whose un-attenuated reconstruction Φ reads and whose errors it ranks."""
        if self.target_decoder is None or not bool(self.target_decoder_filled):
            return self.unet.decoder  # live decoder, or scoring before phase "fader" froze a copy
        return self.target_decoder

    def _reconstruct_plain(self, images: Tensor) -> Tensor:
        """U-Net without attenuation, [0, 1] in and out (the `reconstruction` mask source).

        Runs in eval mode so that this first pass leaves the BN statistics alone in training;
        the mode is restored before returning, so nothing carries over to the next call.
        """
        was_training = self.unet.training
        self.unet.eval()
        try:
            return _unit(self.unet(to_model_range(images)))
        finally:
            self.unet.train(was_training)

    def binary_mask(self, images: Tensor, training: bool = False) -> Tensor:
        """EAR's mask on the patch grid, (B, 1, h, w); training may add random patches."""
        with torch.no_grad():
            scores = self.mask_source(images)
            ratio = 0.0 if isinstance(self.config.mask, NoBinaryMask) else self.config.mask.ratio
            mask = binary_patch_mask(scores, self.grid, ratio, self.mask_source.binary)
            extra = self.config.train_random_mask_ratio
            if training and extra > 0:
                mask = torch.maximum(mask, (torch.rand_like(mask) < extra).to(mask.dtype))
        return mask.to(images.dtype)

    def _obfuscated(self, images: Tensor, training: bool) -> tuple[Tensor, Tensor]:
        mask = self.binary_mask(images, training)
        return obfuscate(images, mask, self.config.mosaic_scale), mask

    def predict_patch_errors(self, obfuscated: Tensor, plain: Tensor) -> Tensor:
        """l̂ (Eq. 2) from the reconstruction's tokens (or the input's, the Fig. 4 reading): (B, n)."""
        source = plain if self.stage.predictor_input == "reconstruction" else obfuscated
        return self.predictor(tokenize(source, self.config.mosaic_scale))

    def attenuation(self, pred: Tensor) -> Tensor:
        """FADeR's mask (B, 1, h, w) from the predicted patch errors (B, n)."""
        kind = self.stage.attenuation
        threshold = kind.threshold if isinstance(kind, HardAttenuation) else 0.0
        return attenuation_mask(pred, self.grid, kind.kind, threshold)

    def _inpaint_step(self, images: Tensor) -> LossParts:
        x_in, mask = self._obfuscated(images, training=True)
        rec = _unit(self.unet(to_model_range(x_in)))
        total, parts = reconstruction_loss(images, rec, self.config.msgms_weight)
        return LossParts(total, parts, {"masked_share": float(mask.mean())})

    def _fader_step(self, images: Tensor) -> LossParts:
        """Eq. 1–3: targets are the frozen U-Net's patch errors; the predictor learns their ranking."""
        cfg, stage = self.config, self.stage
        x_in, _ = self._obfuscated(images, training=True)
        with torch.no_grad():
            feats = [f.detach() for f in self.unet.encoder(to_model_range(x_in))]
            plain = _unit(self._plain_decoder()(feats))
            target = patch_errors(images, plain, cfg.mosaic_scale)
        pred = self.predict_patch_errors(x_in, plain)
        b, n = pred.shape
        many = n * (n - 1) // 2 > stage.rank_pairs
        i, j = random_pairs(n, stage.rank_pairs, b, device=pred.device) if many else all_pairs(n, b, pred.device)
        loss = ranking_loss(pred, target, stage.rank_margin, (i, j))
        with torch.no_grad():  # how often the predictor orders a pair right: to watch, not a loss
            agree = (pred.gather(1, i) > pred.gather(1, j)) == (target.gather(1, i) > target.gather(1, j))
        return LossParts(loss, {"rank": loss.detach()}, {"pair_accuracy": float(agree.float().mean())},
                         {"feats": feats, "pred": pred.detach()})

    def _decoder_step(self, images: Tensor, handoff: Mapping[str, Any]) -> LossParts:
        """Fine-tune the decoder on skips attenuated by the (detached) soft mask of group "fader"."""
        rec = _unit(self.unet.decoder(handoff["feats"], self.attenuation(handoff["pred"]), self.stage.mask_scaling))
        total, parts = reconstruction_loss(images, rec, self.config.msgms_weight)
        return LossParts(total, parts)

    @torch.no_grad()
    def reconstruction(self, images: Tensor, class_ids: Tensor | None = None) -> Tensor:
        return self.explain(images).reconstruction

    @torch.no_grad()
    def explain(self, images: Tensor) -> Explanation:
        cfg = self.config
        x_in, mask = self._obfuscated(images, training=False)
        feats = self.unet.encoder(to_model_range(x_in))
        plain = _unit(self._plain_decoder()(feats))
        att, rec = None, plain
        if self.stage is not None and self.stage.at_inference:
            att = self.attenuation(self.predict_patch_errors(x_in, plain))
            rec = _unit(self.unet.decoder(feats, att, self.stage.mask_scaling))
        amap = anomaly_map(images, rec, cfg.msgms_scales, cfg.mean_filter)
        return Explanation(mask, x_in, att, plain, rec, amap)


__all__ = ["FADeR"]
