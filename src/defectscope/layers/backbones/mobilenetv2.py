"""MobileNetV2 feature extractor (Sandler et al. 2018, arXiv:1801.04381), width 1.0.

Module names follow the key layout of ../shared/weights/mobilenetv2_imagenet_features.safetensors
(`features.0` … `features.18`), so that file loads as it is.
"""

from __future__ import annotations

from torch import Tensor, nn

# (expansion t, channels c, repeats n, first stride s): the standard table
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)
    ]
    return layers + [nn.ReLU6(inplace=True)] if relu else layers


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        layers: list[nn.Module] = [] if expansion == 1 else _conv_bn(cin, hidden, 1)
        layers += _conv_bn(hidden, hidden, 3, stride, groups=hidden)
        layers += _conv_bn(hidden, cout, 1, relu=False)
        self.conv = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        return x + self.conv(x) if self.residual else self.conv(x)


def tap_table() -> dict[int, tuple[int, int]]:
    """Block index → (output channels, output stride): the stem is 0, the final 1×1 conv 18."""
    table, stride = {0: (32, 2)}, 2
    for _, c, n, s in SETTINGS:
        for i in range(n):
            stride *= s if i == 0 else 1
            table[len(table)] = (c, stride)
    table[len(table)] = (1280, stride)
    return table


class MobileNetV2Features(nn.Module):
    """`features.0` … `features.<last>`; `last` cuts the network after the deepest tap needed."""

    def __init__(self, last: int = 18) -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Sequential(*_conv_bn(3, 32, 3, 2))]
        channels = [32]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                blocks.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
                channels.append(c)
        blocks.append(nn.Sequential(*_conv_bn(cin, 1280, 1)))
        channels.append(1280)
        self.features = nn.Sequential(*blocks[: last + 1])
        self.channels = channels[: last + 1]

    def forward(self, x: Tensor, taps: tuple[int, ...]) -> list[Tensor]:
        """Outputs of the blocks in `taps` (ImageNet-normalised input)."""
        out = []
        for index, block in enumerate(self.features):
            x = block(x)
            if index in taps:
                out.append(x)
            if index >= max(taps):
                break
        return out
