"""ResNet-18 and Wide-ResNet-50-2 up to layer3 (He et al. 2016; Zagoruyko & Komodakis 2016).

Module names follow torchvision's, so its published state dicts load unchanged; layer4 and
the classifier are left out (no method here taps them).
"""

from __future__ import annotations

from torch import Tensor, nn


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, width: int = 64) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, width: int = 64) -> None:
        super().__init__()
        hidden = int(planes * width / 64)
        self.conv1 = nn.Conv2d(cin, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.conv2 = nn.Conv2d(hidden, hidden, 3, stride, 1, bias=False)  # torchvision v1.5: stride here
        self.bn2 = nn.BatchNorm2d(hidden)
        self.conv3 = nn.Conv2d(hidden, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(cin, planes * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


def _downsample(cin: int, cout: int, stride: int) -> nn.Sequential | None:
    if stride == 1 and cin == cout:
        return None
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))


ARCHS = {  # block, blocks per layer, bottleneck width per group
    "resnet18": (BasicBlock, (2, 2, 2), 64),
    "wide_resnet50_2": (Bottleneck, (3, 4, 6), 128),
}


def tap_table(arch: str) -> dict[int, tuple[int, int]]:
    """Layer number → (output channels, output stride)."""
    expansion = ARCHS[arch][0].expansion
    return {index: (planes * expansion, 2 ** (index + 1)) for index, planes in enumerate((64, 128, 256), start=1)}


class ResNetFeatures(nn.Module):
    """Stem and layer1…layer3; taps are layer numbers (1: stride 4, 2: stride 8, 3: stride 16)."""

    def __init__(self, arch: str) -> None:
        super().__init__()
        block, counts, width = ARCHS[arch]
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        self.channels: list[int] = []
        for index, (planes, count) in enumerate(zip((64, 128, 256), counts, strict=True), start=1):
            layers = []
            for i in range(count):
                layers.append(block(cin, planes, 2 if i == 0 and index > 1 else 1, width))
                cin = planes * block.expansion
            setattr(self, f"layer{index}", nn.Sequential(*layers))
            self.channels.append(cin)

    def forward(self, x: Tensor, taps: tuple[int, ...]) -> list[Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        out = []
        for index in (1, 2, 3):
            x = getattr(self, f"layer{index}")(x)
            if index in taps:
                out.append(x)
            if index >= max(taps):
                break
        return out
