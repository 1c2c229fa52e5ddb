"""FADeR settings (Park, Kang, Kim, Kim, Yi, "Feature Attenuation of Defective Representation
Can Resolve Incomplete Masking on Anomaly Detection"; seed 003; methods.md §3). Defaults are
the paper's where it gives them; `open` marks choices it leaves open."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

# sha256 of dinov2_vits14_pretrain.pth as published (../shared/weights/README.md)
DINOV2_VITS14_SHA256 = "b938bf1bc15cd2ec0feacfe3a1bb553fe8ea9ca46a7e1d8d00217f29aef60cd9"


@dataclass(frozen=True)
class FADeRConfig:
    # §4.1 base U-Net (EAR): D = 5 blocks; encoder 3 × (conv → BN → LeakyReLU), stride 2 on
    # the third; decoder 3 × (nearest ×2 on the first → conv → BN → LeakyReLU); skips at 1..D−1.
    channels: tuple[int, ...] = (32, 64, 128, 256, 256)  # per depth; the length is D (open widths)
    negative_slope: float = 0.2  # LeakyReLU (open)
    # inpainting input (EAR): inside one deterministic binary mask the image becomes its mosaic
    mosaic_scale: int = 8  # m; also FADeR's patch size. Per-class search: search_mosaic.py
    mask_source: Literal["saliency", "reconstruction", "grid", "none", "dino"] = "saliency"
    mask_ratio: float = 0.1  # share of the m×m patches the binary mask covers (top scores; open)
    train_random_mask_ratio: float = 0.0  # extra random patches masked in training (ours; 0 = off)
    saliency_size: int = 64  # spectral residual works on a small image (Hou & Zhang: 64 px)
    dino_weights: str = ""  # local path to DINO(v2) ViT weights; no download ever
    dino_sha256: str = DINOV2_VITS14_SHA256  # checked before loading; "" skips the check
    dino_image_size: int = 224
    # reconstruction loss on normal images (RIAD/EAR: L2 + MSGMS; open weights)
    msgms_weight: float = 1.0
    # §3.2 FADeR
    fader: bool = True  # False: the plain inpainting U-Net (EAR), one training phase
    fader_inference: bool = True  # apply the soft mask when scoring (False: same weights, no FADeR)
    predictor: Literal["mlp", "vit"] = "mlp"  # Table 3: two-layer MLP or a small ViT
    predictor_input: Literal["reconstruction", "input"] = "reconstruction"  # Eq. 2 (Î) or Fig. 4's I' (open)
    # whose plain reconstruction Φ reads and learns the errors of: the decoder being fine-tuned
    # ("live", the paper trains both at once) or a frozen copy of the pretrained one (open)
    target_decoder: Literal["live", "frozen"] = "live"
    predictor_hidden: int = 256  # MLP hidden width (open)
    vit_dim: int = 128
    vit_depth: int = 2
    vit_heads: int = 4
    rank_margin: float = 1.0  # ξ in Eq. 3 (Learning Loss, Yoo & Kweon 2019: 1.0)
    rank_pairs: int = 4096  # random patch pairs per image for Eq. 3 (all pairs are n²)
    # §3.3 soft mask: M_S = 1 − minmax(l̂) per image, scaled to each skip connection
    mask_type: Literal["soft", "hard"] = "soft"
    hard_threshold: float = 0.5  # hard mask: 0 where the normalised l̂ reaches this
    mask_scaling: Literal["nearest", "bilinear"] = "nearest"  # Θ in Eq. 4
    # training stages (engine phases): "main" trains the U-Net, "fader" the predictor with the
    # decoder fine-tuned at decoder_lr_scale × lr; epochs 0 = the run's budget (train.epochs /
    # max_steps / max_minutes, where the time budget counts from the start of the run)
    inpaint_epochs: int = 0
    fader_epochs: int = 0
    fader_lr: float = 0.0  # 0: train.lr
    decoder_lr_scale: float = 0.1  # §4.1: decoder fine-tuned at 0.1 η
    # scoring: MSGMS at 4 scales, c = 0.0026, mean filter; image score from the map
    msgms_scales: int = 4
    mean_filter: int = 21
    image_score: Literal["max", "topk_mean"] = "max"
    topk: float = 0.01
