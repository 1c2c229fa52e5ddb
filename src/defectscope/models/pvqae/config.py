"""PVQAE settings (Cheng, Qu, Lee, "Patch-aware Vector Quantized Codebook Learning for
Unsupervised Visual Defect Detection"; seeds 000/001; methods.md §1). Defaults are the
paper's where it gives them; `open` marks choices the paper leaves open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from defectscope.layers.backbones import DEFAULT_MOBILENET_WEIGHTS


@dataclass(frozen=True)
class PVQAEConfig:
    # old name → new name: configs and checkpoints written before session 6 still load
    RENAMED_KEYS: ClassVar[dict[str, str]] = {
        "perceptual_backbone": "backbone", "perceptual_backbone_path": "backbone_path",
        "perceptual_backbone_sha256": "backbone_sha256", "perceptual_pretrained": "backbone_pretrained",
    }

    # §1.1 VQ-GAN-style backbone. Stage i works at H / 2^i; the last three stages give the
    # code levels z¹ (finest), z², z³ (coarsest): 32², 16², 8² for a 256 input with 6 stages.
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 1, 2, 2, 4, 4)
    res_blocks: tuple[int, ...] = (1, 1, 1, 2, 2, 2)  # per stage, encoder and (mirrored) decoder
    attention: bool = True  # self-attention at the coarsest level (VQ-GAN)
    num_levels: int = 3  # K (the paper: 3)
    # CPU speed (ours): the decoder's last ×2 as a half-resolution conv + pixel shuffle, and no
    # stage-0 blocks at full resolution in the decoder
    pixel_shuffle_output: bool = False
    # §1.2 quantisation
    num_codes: int = 512
    code_dim: int = 64
    shared_codebook: bool = False  # open: one codebook for all levels or one per level
    beta: float = 0.25
    ema: bool = True
    ema_decay: float = 0.99
    kmeans_init: bool = True
    dead_code_threshold: float = 1.0
    # §1.3 dynamic routing
    routing_design: Literal["quantize_then_route", "route_then_quantize"] = "quantize_then_route"  # open
    router_hidden: int = 128
    # ours (not in the paper): the router also sees each cell's DWT entropy H_p, the texture
    # measure the budget charges by, so it can route by texture directly instead of learning
    # it from the code features through the budget's gradient alone (docs/results/pvqae.md)
    router_sees_entropy: bool = False
    # ours: > 0 also decodes every cell at each single level at every step and adds this weight ×
    # the mean of those K losses. Without it the decoder learns only the levels the router
    # picks, so a level it leaves soon reconstructs worse than the others and the router never
    # comes back: the single-level endings of docs/results/pvqae.md, session 7
    level_rec_weight: float = 0.0
    tau_start: float = 1.0
    tau_end: float = 0.1  # open: the paper anneals towards 0; DQ-VAE keeps 1 (set tau_end = tau_start)
    straight_through: bool = True  # hard one-hot forward, soft gradient (DQ-VAE)
    # §1.4 budget loss
    alpha: float = 2.0  # cost factor per finer level (open)
    dwt_levels: int = 0  # Haar levels per coarse patch; 0 = full decomposition (open)
    dwt_include_approximation: bool = False  # open: with the patch mean, H_p ≈ 0 everywhere
    budget_normalize: bool = True  # costs relative to the batch mean (open: the paper gives no scale)
    entropy_floor: float = 0.05  # ε in u_p = 1 / max(H_p, ε)
    # ours: what makes a patch "rich" (its fine codes cheap). "entropy" is the paper's H_p;
    # "detail" is the patch's grey-level standard deviation (u_p = 1 / max(σ_p, detail_floor)).
    # H_p is high for evenly spread faint noise and low for one sharp edge, and on MTSD the
    # loss fine codes save grows with σ_p and falls with H_p (docs/results/pvqae.md, session 7)
    budget_richness: Literal["entropy", "detail"] = "entropy"
    detail_floor: float = 0.01  # in [0, 1] grey levels
    budget_schedule: Literal["linear", "constant", "cosine"] = "linear"
    lambda_max: float = 1.25  # the paper's best
    # ours (open in the paper): > 0 makes the budget a ceiling, as DQ-VAE's budget ratio: only
    # the mean spend above it is penalised (1 ≈ coarsest everywhere, α^(K−1) finest everywhere,
    # with normalised costs), so the router keeps a mix instead of collapsing to the coarsest
    # level; which cells get the fine codes is still decided by their context-dependent cost
    budget_target: float = 0.0
    # §1.4 reconstruction
    rec_loss: Literal["l1", "l2", "l1_l2"] = "l1_l2"
    # VQ-GAN adds LPIPS (VGG weights we cannot ship); > 0 adds LPIPS's unweighted distance on
    # the frozen ImageNet backbone below (layers/perceptual.py), weight as VQ-GAN's 1.0
    perceptual_weight: float = 0.0
    perceptual_taps: tuple[int, ...] = ()  # (): MobileNetV2 blocks 1, 3, 6, 13 (strides 2…16); ResNet layers 1…3
    # ours (not in the paper): what the autoencoder reconstructs. "image" is the paper's PVQAE.
    # "features": the frozen backbone's patch features, aggregated as PatchCore's (taps resized
    # to the finest one's grid after a p×p average), so that the codes describe texture the
    # network need not learn from a few hundred images; S_rec is then the squared feature
    # error. The code levels are the encoder's last three stages over that grid (stride 8,
    # 16, 32 for MobileNetV2 blocks 6 and 13), the budget still comes from the image's DWT.
    target: Literal["image", "features"] = "image"
    feature_taps: tuple[int, ...] = ()  # (): the two middle stages, as PatchCore (MobileNetV2 6, 13)
    feature_neighbourhood: int = 3  # PatchCore's p
    # ours, from UniAD (You et al. 2022, "feature jittering"): > 0 adds Gaussian noise of std
    # feature_jitter · ‖f‖ / C to each position of the encoder's input features while training
    # (the target stays clean), so the autoencoder learns to map off-normal features back to
    # normal ones rather than to copy them; UniAD uses 20. Target "features" only.
    feature_jitter: float = 0.0
    # the frozen ImageNet backbone of the perceptual term, the feature-distance S_rec and the
    # feature target, read from a local file (nothing downloads)
    backbone: Literal["mobilenet_v2", "resnet18", "wide_resnet50_2"] = "mobilenet_v2"
    backbone_path: str = DEFAULT_MOBILENET_WEIGHTS  # relative paths resolve against the current folder
    backbone_sha256: str = "published"  # "": no check
    backbone_pretrained: bool = True  # False: random init (tests), no file read
    # §1.5 adversarial training
    adversarial: bool = True
    disc_channels: int = 64
    disc_layers: int = 3
    disc_start: int = 2000  # steps before the discriminator switches on
    disc_weight: float = 0.8  # scales VQ-GAN's adaptive weight
    disc_lr_scale: float = 1.0
    # §1.6 budget prior transformer
    prior: Literal["per_class", "universal", "none"] = "per_class"
    prior_dim: int = 128
    prior_heads: int = 4
    prior_layers: int = 1
    prior_mask_ratio: float = 0.3  # share of positions masked per training sequence
    prior_masks_per_image: int = 4  # independent maskings of each level map per step (the encoder runs once)
    prior_epochs: int = 20
    prior_lr: float = 1e-3
    # §1.7 scoring
    score: Literal["product", "one_plus_product", "sum", "rec", "budget"] = "product"
    # ours: S_rec as the paper's squared pixel error, or as the perceptual distance between the
    # image and its reconstruction (the perceptual backbone above; read from its path if the
    # weights were trained without it)
    rec_distance: Literal["pixel", "perceptual"] = "pixel"
    smoothing_sigma: float = 4.0
    image_score: Literal["max", "topk_mean"] = "max"
    topk: float = 0.01
