"""PVQAE: the model the engine trains, in two phases (autoencoder with budget learning, then
the budget prior), and its budget-aware scoring."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from defectscope.layers.backbones import FrozenBackbone
from defectscope.layers.patch_features import PatchFeatures, jitter_features
from defectscope.layers.perceptual import PerceptualLoss
from defectscope.layers.quantizer import VectorQuantizer
from defectscope.layers.scoring import image_score, squared_error_map, to_model_range, to_unit_range
from defectscope.models.base import AnomalyModel, LossParts, ModelOutput, OptimizerGroup, Phase, StepContext
from defectscope.models.pvqae.anomaly_map import anomaly_map, budget_score, pixel_budget
from defectscope.models.pvqae.budget import (
    budget_loss,
    budget_penalty,
    budget_weight,
    level_costs,
    patch_detail,
    patch_entropy,
)
from defectscope.models.pvqae.config import (
    DetailRichness,
    FeatureTarget,
    NoPrior,
    PatchGAN,
    PVQAEConfig,
    QuantizeThenRoute,
    RouteThenQuantize,
)
from defectscope.models.pvqae.discriminator import (
    PatchDiscriminator,
    adaptive_weight,
    generator_loss,
    hinge_d_loss,
)
from defectscope.models.pvqae.loss import reconstruction_loss
from defectscope.models.pvqae.network import Decoder, Encoder
from defectscope.models.pvqae.prior import BudgetPriorTransformer
from defectscope.models.pvqae.routing import (
    DynamicRouter,
    Routing,
    codes_per_image,
    gumbel_tau,
    one_hot_levels,
    route,
    upsample_to,
)

# a routing that sends this share of the cells to one level has collapsed: the rest cannot change
# a ranking of whole images, and S_budget is then (nearly) constant
COLLAPSED_SHARE = 0.99


class Reconstruction(NamedTuple):
    output: Tensor  # what the decoder rebuilds: the image (B, 3, H, W) in [-1, 1], or the patch features
    vq_loss: Tensor
    perplexity: list[Tensor]
    live_codes: list[Tensor]
    codes: list[Tensor] | None = None  # each level's quantised map (quantize_then_route only)


class Explanation(NamedTuple):
    """Every intermediate of the scoring, for pictures and debugging."""

    reconstruction: Tensor | None  # (B, 3, H, W) in [0, 1], made with the prior budget; None for target features
    levels: Tensor  # (B, h, w) dynamic level map (0 = finest)
    prior_levels: Tensor  # (B, h, w) the prior's levels (= levels without a prior)
    budget_score: Tensor  # (B, H, W) S_budget at pixels (zeros without a prior)
    rec_score: Tensor  # (B, H, W) S_rec (squared pixel or feature error, or perceptual distance)
    anomaly_map: Tensor  # (B, H, W)


class PVQAE(AnomalyModel):
    ddp_find_unused_parameters = True  # the disc and prior groups leave other parameters idle

    def __init__(self, config: PVQAEConfig, image_size: int, num_classes: int = 1) -> None:
        super().__init__()
        cfg = self.config = config
        stages = len(cfg.channel_mult)
        target = cfg.target
        self.features = None  # the frozen patch-feature extractor of target "features"
        self.perceptual = None  # the frozen network of the perceptual term and distance
        if isinstance(target, FeatureTarget):
            backbone = FrozenBackbone(target.backbone, "middle", "model.target.backbone.")
            self.features = PatchFeatures(backbone, target.neighbourhood)
            channels, stride = self.features.channels, self.features.stride
        else:
            if target.perceptual_weight > 0 or target.rec_distance == "perceptual":
                self.perceptual = PerceptualLoss(target.backbone, "model.target.backbone.")
            channels, stride = 3, 1
        if image_size % (stride * 2 ** (stages - 1)):
            raise ValueError(f"pvqae: image_size {image_size} must be divisible by {stride * 2 ** (stages - 1)}"
                             + (f" (feature stride {stride} × 2^{stages - 1})" if stride > 1 else ""))
        grid = image_size // stride
        self.num_levels = cfg.num_levels
        self.coarse_grid = (grid // 2 ** (stages - 1),) * 2
        finest = grid // 2 ** (stages - cfg.num_levels)
        self.encoder = Encoder(cfg, in_channels=channels)
        routing = cfg.routing
        shared = isinstance(routing, RouteThenQuantize) or routing.shared_codebook
        self.quantizers = nn.ModuleList(
            VectorQuantizer(cfg.num_codes, cfg.code_dim, cfg.beta, cfg.ema, cfg.ema_decay, cfg.kmeans_init,
                            cfg.dead_code_threshold)
            for _ in range(1 if shared else cfg.num_levels)
        )
        self.router = DynamicRouter(cfg.code_dim, cfg.num_levels, cfg.router_hidden, int(cfg.router_sees_richness))
        positional = (finest, finest) if isinstance(routing, RouteThenQuantize) else None
        self.decoder = Decoder(cfg, out_channels=channels, positional=positional)
        adversarial = cfg.adversarial
        self.discriminator = (
            PatchDiscriminator(channels, adversarial.channels, adversarial.layers)
            if isinstance(adversarial, PatchGAN) else None
        )
        self.prior = None
        if not isinstance(cfg.prior, NoPrior):
            prior = cfg.prior
            self.prior = BudgetPriorTransformer(
                cfg.num_levels, self.coarse_grid, num_classes, prior.kind, prior.dim, prior.heads, prior.layers,
            )

    # --- engine contract ----------------------------------------------------------------

    def phases(self) -> list[Phase]:
        main = [Phase("main")]
        if self.prior is None:
            return main
        # the prior learns the routing the trained encoder and router produce, so they keep
        # their eval-mode behaviour (no dropout, fixed normalisation statistics) while it trains
        prior = self.config.prior
        return main + [Phase("prior", epochs=prior.epochs, lr=prior.lr, frozen=("encoder", "router"))]

    def optimizer_groups(self, phase: str) -> dict[str, OptimizerGroup]:
        if phase == "prior":
            return {"prior": OptimizerGroup(list(self.prior.parameters()))}
        main = [p for m in (self.encoder, self.quantizers, self.router, self.decoder) for p in m.parameters()]
        groups = {"main": OptimizerGroup(main)}
        if self.discriminator is not None:
            # VQ-GAN's discriminator betas: a low β1 keeps its momentum from lagging the generator
            disc = list(self.discriminator.parameters())
            groups["disc"] = OptimizerGroup(disc, self.config.adversarial.lr_scale, (0.5, 0.9))
        return groups

    def training_step(self, images: Tensor, class_ids: Tensor, ctx: StepContext) -> LossParts:
        if ctx.group == "prior":
            return self._prior_step(images, class_ids)
        if ctx.group == "disc":
            return self._disc_step(images, ctx)
        return self._autoencoder_step(images, ctx)

    @torch.no_grad()
    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        out = self.explain(images, class_ids)
        return ModelOutput(out.anomaly_map, image_score(out.anomaly_map, self.config.image_score, self.config.topk))

    # --- pieces -------------------------------------------------------------------------

    @property
    def map_score(self) -> str:
        """How S_budget and S_rec make the map: the prior's choice, or S_rec alone without a prior."""
        return "rec" if self.prior is None else self.config.prior.score

    def target(self, images: Tensor) -> Tensor:
        """What the autoencoder takes in and rebuilds: the image in [-1, 1], or its patch features."""
        if self.features is None:
            return to_model_range(images)
        with torch.no_grad():
            return self.features(images)

    def rec_score(self, images: Tensor, target: Tensor, output: Tensor) -> tuple[Tensor, Tensor | None]:
        """S_rec at pixels (B, H, W), and the reconstructed image in [0, 1] (None for target features)."""
        if self.features is not None:
            error = (output - target).pow(2).sum(dim=1, keepdim=True)
            return F.interpolate(error, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0], None
        reconstruction = to_unit_range(output)
        if self.config.target.rec_distance == "perceptual":
            return self.perceptual.distance_map(images, reconstruction), reconstruction
        return squared_error_map(images, reconstruction), reconstruction

    def richness(self, images: Tensor) -> Tensor:
        """How rich every coarse cell is (B, h, w): what the budget charges by (and the router may see)."""
        measure = self.config.budget_richness
        if isinstance(measure, DetailRichness):
            return patch_detail(images, self.coarse_grid)
        return patch_entropy(images, self.coarse_grid, measure.dwt_levels, measure.include_approximation)

    def budget_costs(self, images: Tensor, richness: Tensor | None = None) -> Tensor:
        """u_{p,k} (B, K, h, w): what each level of each cell costs, from the chosen richness."""
        cfg = self.config
        richness = self.richness(images) if richness is None else richness
        return level_costs(richness, self.num_levels, cfg.alpha, cfg.budget_richness.floor, cfg.budget_normalize)

    def hard_routing(self, features: list[Tensor], images: Tensor) -> Routing:
        """The hard routing at inference (argmax, no Gumbel noise)."""
        extra = self.richness(images)[:, None] if self.config.router_sees_richness else None
        return self.router(features, sample=False, extra=extra)

    def quantizer(self, level: int) -> VectorQuantizer:
        return self.quantizers[0 if len(self.quantizers) == 1 else level]

    def reconstruct(self, features: list[Tensor], scores: Tensor) -> Reconstruction:
        """Decode with the given level scores (B, K, h, w) on the coarse grid."""
        if isinstance(self.config.routing, RouteThenQuantize):
            # DQ-VAE: route the features, quantise once on the finest grid; a cell repeated
            # 4^(K−1−k) times by upsampling counts that much less in the VQ loss
            mixed = route(features, scores)
            level_weight = torch.tensor([4.0 ** -(self.num_levels - 1 - k) for k in range(self.num_levels)],
                                        device=scores.device)
            coarse_weights = (scores.detach() * level_weight[None, :, None, None]).sum(dim=1, keepdim=True)
            weights = upsample_to(coarse_weights, mixed.shape[-2:])[:, 0]
            q = self.quantizer(0)(mixed, weights)
            return Reconstruction(self.decoder(q.quantized), q.loss, [q.perplexity], [q.live_codes])
        outs = [self.quantizer(k)(z) for k, z in enumerate(features)]
        routed = route([o.quantized for o in outs], scores)
        return Reconstruction(self.decoder(routed), sum(o.loss for o in outs), [o.perplexity for o in outs],
                              [o.live_codes for o in outs], [o.quantized for o in outs])

    def _autoencoder_step(self, images: Tensor, ctx: StepContext) -> LossParts:
        cfg = self.config
        x = self.target(images)
        jitter = cfg.target.jitter if isinstance(cfg.target, FeatureTarget) else 0.0
        features = self.encoder(jitter_features(x, jitter) if jitter > 0 else x)
        tau = gumbel_tau(ctx.progress, cfg.tau_start, cfg.tau_end)
        richness = self.richness(images)
        routing = self.router(features, tau=tau, hard=cfg.straight_through, sample=True,
                              extra=richness[:, None] if cfg.router_sees_richness else None)
        rec = self.reconstruct(features, routing.scores)
        rec_loss = reconstruction_loss(x, rec.output, cfg.rec_loss)
        parts = {}
        perceptual_weight = 0.0 if isinstance(cfg.target, FeatureTarget) else cfg.target.perceptual_weight
        if perceptual_weight > 0:
            perceptual = self.perceptual(images, (rec.output + 1) * 0.5)  # no clamp: it would stop gradients
            parts = {"pixel": rec_loss.detach(), "perceptual": perceptual.detach()}
            rec_loss = rec_loss + perceptual_weight * perceptual  # VQ-GAN's nll: one term for the adaptive weight
        costs = self.budget_costs(images, richness)
        l_budget = budget_loss(routing.scores, costs)
        lambda_b = budget_weight(ctx.progress, cfg.lambda_max, cfg.budget_schedule)
        total = rec_loss + rec.vq_loss + lambda_b * budget_penalty(l_budget, cfg.budget_target)
        parts.update({"rec": rec_loss.detach(), "vq": rec.vq_loss.detach(), "budget": l_budget.detach()})
        level_rec_weight = cfg.routing.level_rec_weight if isinstance(cfg.routing, QuantizeThenRoute) else 0.0
        if level_rec_weight > 0:
            level_rec = self._single_level_loss(x, rec.codes)
            total = total + level_rec_weight * level_rec
            parts["level_rec"] = level_rec.detach()
        if self._adversarial_on(ctx.step):
            g_loss = generator_loss(self.discriminator(rec.output))
            disc_weight = cfg.adversarial.weight
            weight = adaptive_weight(rec_loss, g_loss, self.decoder.last_layer, disc_weight) \
                if torch.is_grad_enabled() else torch.tensor(disc_weight)
            total = total + weight * g_loss
            parts.update({"g_adv": g_loss.detach(), "adv_weight": weight})
        share = routing.scores.detach().mean(dim=(0, 2, 3))
        metrics = {
            "tau": tau, "lambda_b": lambda_b,
            "codes_per_image": float(codes_per_image(routing.levels, self.num_levels).float().mean()),
            **{f"level{k}_share": float(share[k]) for k in range(self.num_levels)},
            **{f"perplexity{k}": float(p) for k, p in enumerate(rec.perplexity)},
            **{f"live_codes{k}": float(n) for k, n in enumerate(rec.live_codes)},
        }
        return LossParts(total, parts, metrics, {"fake": rec.output.detach()})

    def _single_level_loss(self, target: Tensor, codes: list[Tensor]) -> Tensor:
        """Mean reconstruction loss of decoding every cell at one level, over the K levels: keeps
        the decoder able to use each level, whichever the router currently prefers."""
        batch, (h, w) = target.shape[0], self.coarse_grid
        losses = [
            reconstruction_loss(target, self.decoder(route(codes, one_hot_levels(
                torch.full((batch, h, w), k, device=target.device), self.num_levels).to(target.dtype))),
                self.config.rec_loss)
            for k in range(self.num_levels)
        ]
        return torch.stack(losses).mean()

    def _adversarial_on(self, step: int) -> bool:
        return self.discriminator is not None and step >= self.config.adversarial.start

    def _disc_step(self, images: Tensor, ctx: StepContext) -> LossParts:
        fake = ctx.handoff.get("fake")
        if not self._adversarial_on(ctx.step) or fake is None:
            idle = sum(p.sum() for p in self.discriminator.parameters()) * 0.0  # keeps DDP and autograd happy
            return LossParts(idle, {})
        real = self.target(images)
        loss = hinge_d_loss(self.discriminator(real), self.discriminator(fake))
        return LossParts(loss, {"d_hinge": loss.detach()})

    @torch.no_grad()
    def dynamic_levels(self, images: Tensor) -> Tensor:
        """The router's hard level map for images in [0, 1] (no Gumbel noise): (B, h, w)."""
        return self.hard_routing(self.encoder(self.target(images)), images).levels

    def _prior_step(self, images: Tensor, class_ids: Tensor) -> LossParts:
        levels = self.dynamic_levels(images)
        prior = self.config.prior
        repeats = prior.masks_per_image
        loss = self.prior.loss(levels.repeat(repeats, 1, 1), class_ids.repeat(repeats), prior.mask_ratio)
        return LossParts(loss, {"ce": loss.detach()})

    @torch.no_grad()
    def explain_maps(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, Tensor]:
        """Level maps (0 = finest codes), S_budget and S_rec at pixel resolution."""
        out = self.explain(images, class_ids)
        size = images.shape[-2:]
        coarse = self.num_levels - 1

        def fineness(levels: Tensor) -> Tensor:  # 1 = finest codes, 0 = coarsest
            return upsample_to((coarse - levels)[:, None].float(), size)[:, 0] / max(coarse, 1)

        return {
            "code level (dynamic)": fineness(out.levels),
            "code level (prior)": fineness(out.prior_levels),
            "S_budget": out.budget_score,
            "S_rec": out.rec_score,
        }

    @torch.no_grad()
    def reconstruction(self, images: Tensor, class_ids: Tensor | None = None) -> Tensor | None:
        """The rebuilt image (None when the target is features: no image is rebuilt)."""
        return self.explain(images, class_ids).reconstruction

    @torch.no_grad()
    def diagnose(self, images: Tensor, class_ids: Tensor | None = None) -> dict[str, float]:
        """Share of cells per level of the hard routing."""
        levels = self.dynamic_levels(images)
        return {f"level{k}_share": float((levels == k).float().mean()) for k in range(self.num_levels)}

    def diagnosis_notes(self, numbers: dict[str, float]) -> list[str]:
        """A note when one level holds (nearly) all cells.

        With one level everywhere, S_budget is the same for every cell, so the paper's product
        S_budget ⊙ S_rec ranks pixels exactly as S_rec does: the budget terms add nothing.
        """
        shares = {k: numbers.get(f"level{k}_share", 0.0) for k in range(self.num_levels)}
        top = max(shares, key=lambda k: shares[k])
        if self.prior is None or shares[top] < COLLAPSED_SHARE:
            return []
        return [f"the routing collapsed to code level {top} ({shares[top]:.1%} of the held-out cells): "
                "S_budget is constant, so the product ranks pixels as S_rec alone"]

    @torch.no_grad()
    def explain(self, images: Tensor, class_ids: Tensor | None = None) -> Explanation:
        """Score with the prior budget (§1.7): reconstruct with b̂, S = S_budget ⊙ S_rec."""
        cfg = self.config
        if class_ids is None:
            class_ids = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        target = self.target(images)
        features = self.encoder(target)
        routing = self.hard_routing(features, images)
        size = images.shape[-2:]
        if self.prior is not None:
            probs = self.prior.predict_each_masked(routing.levels, class_ids)
            prior_levels = probs.argmax(dim=1)
            budget = pixel_budget(budget_score(routing.levels, probs), size)
            scores = one_hot_levels(prior_levels, self.num_levels).to(features[0].dtype)
        else:
            prior_levels, budget, scores = routing.levels, None, routing.scores
        rec, reconstruction = self.rec_score(images, target, self.reconstruct(features, scores).output)
        amap = anomaly_map(budget, rec, self.map_score, cfg.smoothing_sigma)
        return Explanation(
            reconstruction, routing.levels, prior_levels,
            budget if budget is not None else torch.zeros_like(rec), rec, amap,
        )
