"""FADeR settings (Park, Kang, Kim, Kim, Yi, "Feature Attenuation of Defective Representation
Can Resolve Incomplete Masking on Anomaly Detection"; seed 003; docs/methods.md §3). Defaults are
the paper's where it gives them; `open` marks choices it leaves open.

A choice whose options take different settings is one field holding one of several small
dataclasses, told apart by `kind`: `mask: grid` or `mask: {kind: dino, weights: PATH}`. A
setting of an option not chosen is then an error at load, naming both keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from defectscope.checks import (
    Count,
    Fraction,
    Layers,
    OptionalEpochs,
    OptionalLearningRate,
    PositiveWeight,
    Side,
    Weight,
    Width,
)

# sha256 of dinov2_vits14_pretrain.pth as published (../shared/weights/README.md)
DINOV2_VITS14_SHA256 = "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9"

# --- EAR's binary mask: which m×m patches the U-Net sees as mosaic ---------------------------
# Each source scores the patches; the mask covers the top `ratio` of them (open).


@dataclass(frozen=True)
class SaliencyMask:
    """Spectral-residual saliency (Hou & Zhang 2007): no weights, no training (our default)."""

    kind: Literal["saliency"] = "saliency"
    ratio: Fraction = 0.1  # share of the patches covered
    size: Side = 64  # spectral residual works on a small image (Hou & Zhang: 64 px)


@dataclass(frozen=True)
class ReconstructionMask:
    """The U-Net's own MSGMS error on the fully mosaicked image."""

    kind: Literal["reconstruction"] = "reconstruction"
    ratio: Fraction = 0.1


@dataclass(frozen=True)
class GridMask:
    """A fixed lattice, every s-th patch each way with s ≈ 1/√ratio: image-independent."""

    kind: Literal["grid"] = "grid"
    ratio: Fraction = 0.1


@dataclass(frozen=True)
class DinoMask:
    """EAR's: last-layer CLS attention of a DINO / DINOv2 ViT read from a local file."""

    kind: Literal["dino"] = "dino"
    ratio: Fraction = 0.1
    weights: str = ""  # local path to DINO(v2) ViT weights; none ship and nothing downloads
    sha256: str = DINOV2_VITS14_SHA256  # checked before loading; "" skips the check
    image_size: Side = 224


@dataclass(frozen=True)
class NoBinaryMask:
    """Nothing obfuscated: the U-Net sees the image as it is (random patches may still be added)."""

    kind: Literal["none"] = "none"


# --- §3.2 FADeR: the patch-error predictor Φ and the attenuation it drives -------------------


@dataclass(frozen=True)
class SoftAttenuation:
    """§3.3: M_S = 1 − min-max(l̂) per image."""

    kind: Literal["soft"] = "soft"


@dataclass(frozen=True)
class HardAttenuation:
    """Table 3's alternative: 0 where the normalised l̂ reaches `threshold`, 1 elsewhere."""

    kind: Literal["hard"] = "hard"
    threshold: Fraction = 0.5


@dataclass(frozen=True)
class FaderStage:
    """What every FADeR predictor shares; the variants below add the predictor's own sizes."""

    kind: str = ""
    # what Φ reads: the plain reconstruction Î (Eq. 2) or the obfuscated input I' (Fig. 4) (open)
    predictor_input: Literal["reconstruction", "input"] = "reconstruction"
    # whose plain reconstruction Φ reads and learns the errors of: the decoder being fine-tuned
    # ("live", the paper trains both at once) or a frozen copy of the pretrained one (open)
    target_decoder: Literal["live", "frozen"] = "live"
    rank_margin: Weight = 1.0  # ξ in Eq. 3 (Learning Loss, Yoo & Kweon 2019: 1.0)
    rank_pairs: Count = 4096  # random patch pairs per image for Eq. 3 (all pairs are n²)
    attenuation: SoftAttenuation | HardAttenuation = field(default_factory=SoftAttenuation)
    mask_scaling: Literal["nearest", "bilinear"] = "nearest"  # Θ in Eq. 4, to each skip's size
    at_inference: bool = True  # apply the mask when scoring (False: the same weights, no FADeR)
    # phase "fader" trains Φ with the encoder frozen and the decoder fine-tuned at
    # decoder_lr_scale × lr; epochs 0 = until the run's budget ends, as inpaint_epochs
    epochs: OptionalEpochs = 0
    lr: OptionalLearningRate = 0.0  # 0: train.lr
    decoder_lr_scale: PositiveWeight = 0.1  # §4.1: decoder fine-tuned at 0.1 η


@dataclass(frozen=True)
class MLPFader(FaderStage):
    """The paper's Φ: a two-layer MLP over each patch on its own."""

    kind: Literal["mlp"] = "mlp"
    hidden: Width = 256  # (open)


@dataclass(frozen=True)
class ViTFader(FaderStage):
    """Table 3's alternative Φ, small here: patches attend to each other before the head."""

    kind: Literal["vit"] = "vit"
    dim: Width = 128
    depth: Layers = 2
    heads: Layers = 4


@dataclass(frozen=True)
class NoFader:
    """The plain inpainting U-Net (EAR): one training phase, no attenuation."""

    kind: Literal["none"] = "none"


@dataclass(frozen=True)
class FADeRConfig:
    # §4.1 base U-Net (EAR): D = 5 blocks; encoder 3 × (conv → BN → LeakyReLU), stride 2 on
    # the third; decoder 3 × (nearest ×2 on the first → conv → BN → LeakyReLU); skips at 1..D−1.
    channels: tuple[Width, ...] = (32, 64, 128, 256, 256)  # per depth; the length is D (open widths)
    negative_slope: Weight = 0.2  # LeakyReLU (open)
    # inpainting input (EAR): inside one deterministic binary mask the image becomes its mosaic
    mosaic_scale: Side = 8  # m; also FADeR's patch size. Per class: `defectscope tune-mosaic`
    mask: SaliencyMask | ReconstructionMask | GridMask | DinoMask | NoBinaryMask = field(
        default_factory=SaliencyMask
    )
    train_random_mask_ratio: Fraction = 0.0  # extra random patches masked in training (ours; 0 = off)
    # reconstruction loss on normal images (RIAD/EAR: L2 + MSGMS; open weights)
    msgms_weight: Weight = 1.0
    # phase "main" trains the U-Net for this many epochs; 0 = the run's budget (train.epochs /
    # max_steps / max_minutes, where the time budget counts from the start of the run)
    inpaint_epochs: OptionalEpochs = 0
    fader: MLPFader | ViTFader | NoFader = field(default_factory=MLPFader)
    # scoring: MSGMS at `msgms_scales` scales, c = 0.0026, mean filter; image score from the map
    msgms_scales: Layers = 4
    mean_filter: Side = 21
    image_score: Literal["max", "topk_mean"] = "max"
    topk: Fraction = 0.01  # share of pixels averaged for topk_mean
