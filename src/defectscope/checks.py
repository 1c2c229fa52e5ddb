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


def AtLeast(low: float) -> Check:  # noqa: N802 - reads as a type annotation
    return Check(low=low)


def Above(low: float) -> Check:  # noqa: N802
    return Check(low=low, low_open=True)


def Between(low: float, high: float) -> Check:  # noqa: N802
    return Check(low=low, high=high)


# the usual ones, so a field reads `batch_size: PositiveInt = 8`
PositiveInt = Annotated[int, AtLeast(1)]
NonNegativeInt = Annotated[int, AtLeast(0)]
PositiveFloat = Annotated[float, Above(0)]
NonNegativeFloat = Annotated[float, AtLeast(0)]
Fraction = Annotated[float, Between(0, 1)]
