"""Ranges a config number must lie in, declared beside the field: `batch_size: PositiveInt = 8`.

A leaf module (it imports nothing from defectscope) so that every config dataclass — data,
train, each model's — can declare its ranges where the field is; `defectscope.config` checks
them when a config is read, so a bad value is an error naming the key and the file before any
work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated


@dataclass(frozen=True)
class Check:
    """A range a number must lie in, declared beside the field: `Annotated[int, AtLeast(1)]`.

    NaN fails every check (its comparisons are all false).
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False  # True: low itself is excluded
    high_open: bool = False

    def holds(self, value: float) -> bool:
        low_ok = self.low is None or (value > self.low if self.low_open else value >= self.low)
        high_ok = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(low_ok and high_ok) and value == value

    def describe(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '≤'} {_number(self.high)}")
        return " and ".join(parts) or "a number"


def _number(value: float) -> str:
    """Whole bounds in full (a seed's 4294967295, not 4.29497e+09); others as %g."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class Text:
    """A string field that must be written as text: `root: 5` is refused, not read as the folder "5".

    Paths are capped at Linux's PATH_MAX and may not hold a NUL byte, which no file name can.
    """

    max_length: int = 4096
    path: bool = True

    def problem(self, value: object) -> str | None:
        """What is wrong with the value as written, or None."""
        if not isinstance(value, str):
            return f"must be {'a path' if self.path else 'text'} written as text (in quotes if it looks like a number)"
        if len(value) > self.max_length:
            return f"is {len(value)} characters long; at most {self.max_length}"
        if self.path and "\0" in value:
            return "holds a NUL byte, which no path can"
        return None


def AtLeast(low: float) -> Check:  # noqa: N802 - reads as a type annotation
    return Check(low=low)


def Above(low: float) -> Check:  # noqa: N802
    return Check(low=low, low_open=True)


def Between(low: float, high: float) -> Check:  # noqa: N802
    return Check(low=low, high=high)


def Within(low: float, high: float, low_open: bool = False) -> Check:  # noqa: N802
    return Check(low=low, high=high, low_open=low_open)


# the usual ones, so a field reads `batch_size: PositiveInt = 8`; a config field needs an upper
# bound too (tests/models/test_model_config_ranges.py), so these serve only as parts of others
PositiveInt = Annotated[int, AtLeast(1)]
NonNegativeInt = Annotated[int, AtLeast(0)]
PositiveFloat = Annotated[float, Above(0)]
NonNegativeFloat = Annotated[float, AtLeast(0)]
Fraction = Annotated[float, Between(0, 1)]
PathText = Annotated[str, Text()]  # a file or folder, relative to the current folder unless absolute

# --- upper bounds: what one machine can build and run ----------------------------------------
# Each is far above every published setting and far below where torch or the operating system
# fails (int32 sizes, memory, file handles), so a slip of the finger (2147483648 for 2048,
# 1e308 for 1e3) is an error naming the key before any work starts, not a crash or a hang hours in.

# channels, feature, code and hidden widths: one 8192 → 8192 3×3 convolution is already 2.4 GB
# of float32 weights (ViT-B is 768 wide, Wide ResNet-50's widest tap 2048)
MAX_WIDTH = 8192
Width = Annotated[int, Between(1, MAX_WIDTH)]
# image sides, tiles and windows in pixels: one 8192² RGB image is 805 MB as float32, twice a
# 16 MP camera's side; a window or patch larger than the image never fits it
MAX_SIDE = 8192
Side = Annotated[int, Between(1, MAX_SIDE)]
# layers, blocks, heads, levels and scales: deeper than any network here by far
MAX_LAYERS = 256
Layers = Annotated[int, Between(1, MAX_LAYERS)]
OptionalLayers = Annotated[int, Between(0, MAX_LAYERS)]  # 0 means none, or the default
# codebook entries, memory items, neighbours, sampled pairs, patches per chunk
MAX_COUNT = 1 << 24
Count = Annotated[int, Between(1, MAX_COUNT)]
OptionalCount = Annotated[int, Between(0, MAX_COUNT)]
# epochs and steps: counters and schedules stay exact and fit a C int where torch takes one
MAX_STEPS = 2**31 - 1
Steps = Annotated[int, Between(0, MAX_STEPS)]
PositiveSteps = Annotated[int, Between(1, MAX_STEPS)]
MAX_EPOCHS = 1_000_000
Epochs = Annotated[int, Between(1, MAX_EPOCHS)]
OptionalEpochs = Annotated[int, Between(0, MAX_EPOCHS)]  # 0: the run's budget decides
# loss weights, margins, factors and floors: far past any useful value, short of the overflow
# that turns a float32 loss into inf and training into NaN
MAX_WEIGHT = 1e6
Weight = Annotated[float, Between(0, MAX_WEIGHT)]
PositiveWeight = Annotated[float, Within(0, MAX_WEIGHT, low_open=True)]
# learning rates: an Adam step of 10 already leaves every weight where it started meaning nothing
MAX_LR = 10.0
LearningRate = Annotated[float, Within(0, MAX_LR, low_open=True)]
OptionalLearningRate = Annotated[float, Between(0, MAX_LR)]  # 0: another setting's
# Gaussian smoothing of a map, in pixels: the kernel spans ±4σ, and a kernel wider than the map
# cannot be padded (config.RunConfig also checks σ against the working size)
MAX_SIGMA = 256.0
Sigma = Annotated[float, Between(0, MAX_SIGMA)]
# numpy's legacy seeding (under Fabric.seed_everything) takes only [0, 2**32 - 1]; one range for
# every seed, so a seed that works for the split also works for training
Seed = Annotated[int, Between(0, 2**32 - 1)]
