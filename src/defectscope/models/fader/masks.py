"""Where EAR's single deterministic binary mask comes from: sources behind one interface.

A source turns images (B, 3, H, W) in [0, 1] into a suspicion map (B, h', w') at any
resolution (higher = more likely defective). `binary_patch_mask` turns any such map into the
binary mask on the m×m patch grid: the top `mask.ratio` share of patches. FADeR's point is that
it repairs whatever such a mask misses, so the source is a setting (`model.mask.kind`):

- `saliency` (default, offline, no training): spectral-residual saliency, Hou & Zhang,
  "Saliency Detection: A Spectral Residual Approach", CVPR 2007;
- `reconstruction`: the U-Net's own reconstruction error on the fully mosaicked image
  (a first pass of the model being trained);
- `grid`: a fixed lattice of patches, independent of the image;
- `none`: no mask (the plain U-Net, open to the identity shortcut);
- `dino`: EAR's choice, the last-layer CLS attention of a DINO/DINOv2 ViT, read from a local
  file checked against its published sha256 (nothing is downloaded).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import torch
import torch.nn.functional as F
from kornia.filters import gaussian_blur2d
from torch import Tensor, nn

from defectscope.layers.msgms import msgms_map
from defectscope.models.fader.config import (
    DinoMask,
    GridMask,
    NoBinaryMask,
    ReconstructionMask,
    SaliencyMask,
)
from defectscope.models.fader.mosaic import mosaic


class MaskSource(Protocol):
    binary: bool  # True: the map is already the mask (1 = masked) on the patch grid

    def __call__(self, images: Tensor) -> Tensor:
        """(B, 3, H, W) in [0, 1] → (B, h', w') suspicion map, higher = more suspect."""
        ...


def binary_patch_mask(scores: Tensor, grid: tuple[int, int], ratio: float, binary: bool = False) -> Tensor:
    """The top `ratio` share of the grid's patches by mean score: (B, 1, h, w) in {0, 1}.

    A source that is already binary (`binary`) keeps its own mask instead.
    """
    b = scores.shape[0]
    pooled = F.adaptive_avg_pool2d(scores[:, None].float(), grid).flatten(1)  # (B, n)
    if binary:
        return (pooled > 0.5).to(pooled.dtype).reshape(b, 1, *grid)
    n = pooled.shape[1]
    k = int(round(ratio * n))
    mask = torch.zeros_like(pooled)
    if k > 0:
        mask.scatter_(1, pooled.topk(min(k, n), dim=1).indices, 1.0)
    return mask.reshape(b, 1, *grid)


class SpectralResidualSaliency:
    """Hou & Zhang 2007: what the log-amplitude spectrum has beyond its local average.

    The 2-D DFT is two products with the cos/sin matrices, in float64 and real arithmetic:
    the same numbers as torch.fft to ~1e-12 at 64 px, and a graph ONNX (which has no complex
    tensors) and onnxruntime run exactly as torch does, so the top patches they pick agree.
    """

    binary = False

    def __init__(self, size: int = 64) -> None:
        self.size = size
        k = torch.arange(size, dtype=torch.float64)
        angle = torch.outer(k, k).remainder(size) * (2 * math.pi / size)  # reduced first: exact cos/sin
        self.cos, self.sin = torch.cos(angle), torch.sin(angle)  # symmetric (size, size)

    def __call__(self, images: Tensor) -> Tensor:
        grey = F.interpolate(images.float().mean(dim=1, keepdim=True), size=(self.size, self.size),
                             mode="area").double()
        c, s = self.cos.to(grey.device), self.sin.to(grey.device)
        # X = F g F with F = C − iS
        re, im = c @ grey @ c - s @ grey @ s, -(s @ grey @ c + c @ grey @ s)
        magnitude = torch.sqrt(re * re + im * im)
        log_amp = torch.log(magnitude + 1e-8)
        # the 3×3 mean with circular borders, as box_blur(..., border_type="circular")
        local = sum(log_amp.roll((dy, dx), dims=(-2, -1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1)) / 9.0
        amplitude = torch.exp(log_amp - local)
        # exp(residual + i·angle(X)): the phase of X, or angle 0 where X is exactly 0
        nonzero = magnitude > 0
        scale = amplitude / torch.where(nonzero, magnitude, torch.ones_like(magnitude))
        a, b = torch.where(nonzero, re * scale, amplitude), torch.where(nonzero, im * scale, torch.zeros_like(im))
        # z = F* Z F* / N² with F* = C + iS, Z = A + iB
        p_re, p_im = c @ a - s @ b, c @ b + s @ a
        z_re, z_im = p_re @ c - p_im @ s, p_re @ s + p_im @ c
        saliency = ((z_re * z_re + z_im * z_im) / float(self.size) ** 4).float()
        sigma = self.size / 24  # Hou & Zhang smooth with σ = 8 at 64 px on a larger kernel; ours is milder
        k = 2 * int(3 * sigma) + 1
        return gaussian_blur2d(saliency, (k, k), (sigma, sigma), border_type="reflect")[:, 0]


class ReconstructionErrorSource:
    """A first pass: the U-Net reconstructs the fully mosaicked image; MSGMS error marks suspects."""

    binary = False

    def __init__(self, reconstruct: Callable[[Tensor], Tensor], m: int) -> None:
        self.reconstruct, self.m = reconstruct, m

    @torch.no_grad()
    def __call__(self, images: Tensor) -> Tensor:
        return msgms_map(images, self.reconstruct(mosaic(images, self.m)), mean_filter=self.m | 1)


class GridSource:
    """A fixed lattice (every s-th patch in both directions, s ≈ 1/√ratio), image-independent."""

    binary = True

    def __init__(self, grid: tuple[int, int], ratio: float) -> None:
        s = max(1, round(1 / math.sqrt(max(ratio, 1e-6))))
        lattice = torch.zeros(grid)
        lattice[s // 2 :: s, s // 2 :: s] = 1.0
        self.lattice = lattice

    def __call__(self, images: Tensor) -> Tensor:
        return self.lattice.to(images.device).expand(images.shape[0], -1, -1)


class NoMask:
    binary = True

    def __call__(self, images: Tensor) -> Tensor:
        return torch.zeros(images.shape[0], 1, 1, device=images.device)


# --- DINO / DINOv2 attention (EAR) --------------------------------------------------------


class _Block(nn.Module):
    """Pre-LN ViT block with DINOv2's optional LayerScale; key names as DINO(v2) checkpoints."""

    def __init__(self, dim: int, heads: int, mlp: int, layerscale: bool) -> None:
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim)
        self.attn.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, mlp)
        self.mlp.fc2 = nn.Linear(mlp, dim)
        if layerscale:
            self.ls1, self.ls2 = nn.Module(), nn.Module()
            self.ls1.gamma = nn.Parameter(torch.ones(dim))
            self.ls2.gamma = nn.Parameter(torch.ones(dim))
        self.layerscale = layerscale

    def attention(self, x: Tensor) -> tuple[Tensor, Tensor]:
        b, n, d = x.shape
        q, k, v = self.attn.qkv(x).reshape(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = (q @ k.transpose(-2, -1) * (d // self.heads) ** -0.5).softmax(dim=-1)  # (B, heads, n, n)
        out = (weights @ v).transpose(1, 2).reshape(b, n, d)
        return self.attn.proj(out), weights

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        a, weights = self.attention(self.norm1(x))
        x = x + (a * self.ls1.gamma if self.layerscale else a)
        h = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        return x + (h * self.ls2.gamma if self.layerscale else h), weights


class DinoViT(nn.Module):
    """Just enough ViT to read a DINO / DINOv2 backbone state dict and return CLS attention."""

    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, state: dict[str, Tensor]) -> None:
        super().__init__()
        dim = state["cls_token"].shape[-1]
        self.patch = state["patch_embed.proj.weight"].shape[-1]
        depth = 1 + max(int(k.split(".")[1]) for k in state if k.startswith("blocks."))
        mlp = state["blocks.0.mlp.fc1.weight"].shape[0]
        layerscale = "blocks.0.ls1.gamma" in state
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros_like(state["pos_embed"]))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, dim, self.patch, self.patch)
        self.blocks = nn.ModuleList(_Block(dim, max(1, dim // 64), mlp, layerscale) for _ in range(depth))
        keep = {k: v for k, v in state.items() if k != "mask_token" and not k.startswith(("norm.", "head", "register"))}
        missing, unexpected = self.load_state_dict(keep, strict=False)
        if missing or unexpected:
            raise ValueError(f"unexpected DINO key layout (missing {missing[:3]}, unexpected {unexpected[:3]})")

    def _positions(self, h: int, w: int) -> Tensor:
        cls, grid = self.pos_embed[:, :1], self.pos_embed[:, 1:]
        side = int(math.sqrt(grid.shape[1]))
        grid = grid.reshape(1, side, side, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([cls, grid.flatten(2).transpose(1, 2)], dim=1)

    @torch.no_grad()
    def cls_attention(self, images: Tensor) -> Tensor:
        """Last block's CLS → patch attention, mean over heads: (B, H/p, W/p)."""
        mean = torch.tensor(self.MEAN, device=images.device)[None, :, None, None]
        std = torch.tensor(self.STD, device=images.device)[None, :, None, None]
        x = self.patch_embed.proj((images - mean) / std)
        h, w = x.shape[-2:]
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x.flatten(2).transpose(1, 2)], dim=1)
        x = x + self._positions(h, w)
        weights = None
        for block in self.blocks:
            x, weights = block(x)
        return weights[:, :, 0, 1:].mean(dim=1).reshape(-1, h, w)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load_dino(path: str, sha256: str) -> DinoViT:
    """Read DINO(v2) weights from a local file after checking its sha256; never downloads."""
    if not path:
        raise FileNotFoundError(
            "fader: mask 'dino' needs model.mask.weights, a local path to DINO/DINOv2 ViT weights "
            "(e.g. dinov2_vits14_pretrain.pth; published sums in ../shared/weights/README.md); none ship "
            "with defectscope. Offline alternatives: model.mask saliency | reconstruction | grid"
        )
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"fader: DINO weights not found at {file} (model.mask.weights); nothing is downloaded")
    if sha256:
        actual = sha256_of(file)
        if actual != sha256.lower():
            raise ValueError(f"fader: {file}: sha256 {actual} does not match the expected {sha256} "
                             "(model.mask.sha256; set it to '' to skip the check for other weights)")
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same message
        raise ValueError(f"fader: {file}: not a readable torch state dict ({err})") from err
    if isinstance(state, dict) and "teacher" in state:  # DINO training checkpoints
        state = {k.removeprefix("backbone."): v for k, v in state["teacher"].items()}
    if not isinstance(state, dict) or "cls_token" not in state or "patch_embed.proj.weight" not in state:
        raise ValueError(f"fader: {file}: no ViT backbone keys (cls_token, patch_embed.proj.weight)")
    return DinoViT(state).eval()


class DinoAttentionSource:
    """EAR: last-layer CLS attention of a pretrained DINO ViT (kept out of the model's state dict)."""

    binary = False

    def __init__(self, path: str, sha256: str, image_size: int) -> None:
        self.vit = load_dino(path, sha256)
        self.image_size = image_size - image_size % self.vit.patch

    def __call__(self, images: Tensor) -> Tensor:
        vit = self.vit.to(images.device)
        x = F.interpolate(images.float(), size=(self.image_size, self.image_size), mode="bilinear",
                          align_corners=False, antialias=True)
        return vit.cls_attention(x)


def build_mask_source(
    cfg: SaliencyMask | ReconstructionMask | GridMask | DinoMask | NoBinaryMask, patch: int, grid: tuple[int, int],
    reconstruct: Callable[[Tensor], Tensor] | None = None,
) -> MaskSource:
    """The source `model.mask` names; `patch` is the mosaic scale m, `grid` the patch grid."""
    if isinstance(cfg, SaliencyMask):
        return SpectralResidualSaliency(cfg.size)
    if isinstance(cfg, ReconstructionMask):
        if reconstruct is None:
            raise ValueError("fader: mask 'reconstruction' needs the model's reconstruct function")
        return ReconstructionErrorSource(reconstruct, patch)
    if isinstance(cfg, GridMask):
        return GridSource(grid, cfg.ratio)
    if isinstance(cfg, NoBinaryMask):
        return NoMask()
    if isinstance(cfg, DinoMask):
        return DinoAttentionSource(cfg.weights, cfg.sha256, cfg.image_size)
    raise ValueError(f"fader: unknown mask {cfg!r}")
