"""PVQAE settings (Cheng, Qu, Lee, "Patch-aware Vector Quantized Codebook Learning for
Unsupervised Visual Defect Detection"; seeds 000/001; docs/methods.md §1). Defaults are the
paper's where it gives them; `open` marks choices the paper leaves open.

A choice whose options take different settings is one field holding one of several small
dataclasses, told apart by `kind`: `target: features` or `target: {kind: features, jitter: 20}`.
A setting of an option not chosen is then an error at load, naming both keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from defectscope.checks import (
    Check,
    Count,
    Epochs,
    Fraction,
    Layers,
    LearningRate,
    OptionalLayers,
    PositiveWeight,
    Side,
    Sigma,
    Steps,
    Weight,
    Width,
)
from defectscope.layers.backbones.config import BackboneConfig

# a share that must leave something: (0, 1]
OpenFraction = Annotated[float, Check(low=0, high=1, low_open=True)]

# --- §1.3 routing design (open) ---------------------------------------------------------------


@dataclass(frozen=True)
class QuantizeThenRoute:
    """Quantise every level's features, then route the quantised maps (our reading of §1.3)."""

    kind: Literal["quantize_then_route"] = "quantize_then_route"
    shared_codebook: bool = False  # open: one codebook for all levels or one per level
    # ours: > 0 also decodes every cell at each single level at every step and adds this weight ×
    # the mean of those K losses. Without it the decoder learns only the levels the router
    # picks, so a level it leaves soon reconstructs worse than the others and the router never
    # comes back to it (docs/results/pvqae.md)
    level_rec_weight: Weight = 0.0


@dataclass(frozen=True)
class RouteThenQuantize:
    """DQ-VAE: route the features, then quantise once on the finest grid with one codebook."""

    kind: Literal["route_then_quantize"] = "route_then_quantize"


# --- §1.4 what makes a patch rich, so that its fine codes are cheap ---------------------------


@dataclass(frozen=True)
class EntropyRichness:
    """The paper's H_p, the normalised entropy of the patch's Haar energies: u_p = 1 / max(H_p, floor)."""

    kind: Literal["entropy"] = "entropy"
    floor: PositiveWeight = 0.05  # ε; H_p lies in [0, 1]
    dwt_levels: OptionalLayers = 0  # Haar levels per coarse patch; 0 = full decomposition (open)
    # open: with the patch mean, which holds over 90 % of a real patch's energy, H_p ≈ 0 everywhere
    include_approximation: bool = False


@dataclass(frozen=True)
class DetailRichness:
    """Ours: the patch's grey-level standard deviation σ_p, u_p = 1 / max(σ_p, floor).

    H_p is high for evenly spread faint noise and low for one sharp edge; on MTSD the loss
    fine codes save grows with σ_p and falls with H_p (docs/results/pvqae.md).
    """

    kind: Literal["detail"] = "detail"
    floor: PositiveWeight = 0.01  # in [0, 1] grey levels


# --- what the autoencoder rebuilds ------------------------------------------------------------


@dataclass(frozen=True)
class ImageTarget:
    """The paper's PVQAE: the autoencoder rebuilds the image, S_rec is its squared pixel error."""

    kind: Literal["image"] = "image"
    # VQ-GAN adds LPIPS (VGG weights we cannot ship); > 0 adds LPIPS's unweighted distance on
    # `backbone` (layers/perceptual.py), weight as VQ-GAN's 1.0
    perceptual_weight: Weight = 0.0
    # ours: S_rec as the paper's squared pixel error, or as the perceptual distance between the
    # image and its reconstruction on `backbone` (read from its file if the weights were
    # trained without the perceptual term)
    rec_distance: Literal["pixel", "perceptual"] = "pixel"
    # the frozen ImageNet network of the perceptual term and distance, read only when one is
    # on; taps (): once per stride 2…16 (MobileNetV2 blocks 1, 3, 6, 13; ResNet layers 1…3)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)


@dataclass(frozen=True)
class FeatureTarget:
    """Ours: the autoencoder rebuilds a frozen ImageNet backbone's patch features.

    Aggregated as PatchCore's (taps resized to the finest one's grid after a p×p average), so
    that the codes describe texture the network need not learn from a few hundred images;
    S_rec is the squared feature error. The code levels are the encoder's last three stages
    over that grid; the budget still comes from the image. No image is rebuilt, so neither a
    perceptual term nor a perceptual S_rec applies.
    """

    kind: Literal["features"] = "features"
    # taps (): the two middle stages, as PatchCore (MobileNetV2 blocks 6 and 13, strides 8, 16)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    neighbourhood: Side = 3  # PatchCore's p
    # from UniAD (You et al. 2022, "feature jittering"): > 0 adds Gaussian noise of std
    # jitter · ‖f‖ / C to each position of the encoder's input features while training (the
    # target stays clean), so the autoencoder learns to map off-normal features back to normal
    # ones rather than to copy them; UniAD uses 20
    jitter: Weight = 0.0


# --- §1.5 adversarial training ----------------------------------------------------------------


@dataclass(frozen=True)
class PatchGAN:
    """VQ-GAN's discriminator: Isola et al.'s PatchGAN, hinge loss, adaptive weight."""

    kind: Literal["patchgan"] = "patchgan"
    # steps before it switches on: the autoencoder must first reconstruct better than the mean
    # image, or the adversarial term drives it away from the data and codes die
    start: Steps = 2000
    weight: Weight = 0.8  # scales VQ-GAN's adaptive weight
    lr_scale: PositiveWeight = 1.0  # of train.lr
    channels: Width = 64
    layers: Layers = 3


@dataclass(frozen=True)
class NoDiscriminator:
    """No adversarial term: the autoencoder trains on reconstruction, VQ and budget losses."""

    kind: Literal["none"] = "none"


# --- §1.6 budget prior and §1.7 scoring -------------------------------------------------------


@dataclass(frozen=True)
class PerClassPrior:
    """The Budget Prior Transformer with one CLS token per class (the paper's best)."""

    kind: Literal["per_class"] = "per_class"
    dim: Width = 128
    heads: Layers = 4
    layers: Layers = 1
    mask_ratio: OpenFraction = 0.3  # share of positions masked per training sequence
    # independent maskings of each level map per step, so the frozen encoder runs once for them
    masks_per_image: Count = 4
    epochs: Epochs = 20
    lr: LearningRate = 1e-3
    # how S_budget and S_rec make the map: the paper's product; one_plus_product (1 + S_budget)
    # ⊙ S_rec; sum S_rec + mean(S_rec)·S_budget; or either alone
    score: Literal["product", "one_plus_product", "sum", "rec", "budget"] = "product"


@dataclass(frozen=True)
class UniversalPrior(PerClassPrior):
    """The same transformer with one CLS token shared by every class."""

    kind: Literal["universal"] = "universal"


@dataclass(frozen=True)
class NoPrior:
    """No budget prior: the map is S_rec alone, reconstructed with the router's own levels."""

    kind: Literal["none"] = "none"


@dataclass(frozen=True)
class PVQAEConfig:
    # §1.1 VQ-GAN-style backbone. Stage i works at H / 2^i; the last three stages give the
    # code levels z¹ (finest), z², z³ (coarsest): 32², 16², 8² for a 256 input with 6 stages.
    channels: Width = 64
    channel_mult: tuple[Width, ...] = (1, 1, 2, 2, 4, 4)
    res_blocks: tuple[OptionalLayers, ...] = (1, 1, 1, 2, 2, 2)  # per stage, encoder and (mirrored) decoder
    attention: bool = True  # self-attention at the coarsest level (VQ-GAN)
    num_levels: Layers = 3  # K (the paper: 3)
    # CPU speed (ours): the decoder's last ×2 as a half-resolution conv + pixel shuffle, and no
    # stage-0 blocks at full resolution in the decoder
    pixel_shuffle_output: bool = False
    # §1.2 quantisation
    num_codes: Count = 512
    code_dim: Width = 64
    beta: Weight = 0.25
    ema: bool = True
    ema_decay: Fraction = 0.99
    kmeans_init: bool = True
    dead_code_threshold: Weight = 1.0
    # §1.3 dynamic routing
    routing: QuantizeThenRoute | RouteThenQuantize = field(default_factory=QuantizeThenRoute)  # open
    router_hidden: Width = 128
    # ours (not in the paper): the router also sees each cell's richness, the measure the
    # budget charges by, so it can route by texture directly instead of learning it from the
    # code features through the budget's gradient alone (docs/results/pvqae.md)
    router_sees_richness: bool = False
    tau_start: PositiveWeight = 1.0
    tau_end: PositiveWeight = 0.1  # open: the paper anneals towards 0; DQ-VAE keeps 1 (set tau_end = tau_start)
    straight_through: bool = True  # hard one-hot forward, soft gradient (DQ-VAE)
    # §1.4 budget loss
    alpha: PositiveWeight = 2.0  # cost factor per finer level (open)
    budget_richness: EntropyRichness | DetailRichness = field(default_factory=EntropyRichness)
    budget_normalize: bool = True  # costs relative to the batch mean (open: the paper gives no scale)
    budget_schedule: Literal["linear", "constant", "cosine"] = "linear"
    lambda_max: Weight = 1.25  # the paper's best
    # ours (open in the paper): > 0 makes the budget a ceiling, as DQ-VAE's budget ratio: only
    # the mean spend above it is penalised (1 ≈ coarsest everywhere, α^(K−1) finest everywhere,
    # with normalised costs), so the router keeps a mix instead of collapsing to the coarsest
    # level; which cells get the fine codes is still decided by their context-dependent cost
    budget_target: Weight = 0.0
    # §1.4 reconstruction, of the target below
    rec_loss: Literal["l1", "l2", "l1_l2"] = "l1_l2"
    target: ImageTarget | FeatureTarget = field(default_factory=ImageTarget)
    adversarial: PatchGAN | NoDiscriminator = field(default_factory=PatchGAN)
    prior: PerClassPrior | UniversalPrior | NoPrior = field(default_factory=PerClassPrior)
    # §1.7 the map's smoothing and the image score taken from it
    smoothing_sigma: Sigma = 4.0
    image_score: Literal["max", "topk_mean"] = "max"
    topk: Fraction = 0.01  # share of pixels averaged for topk_mean
