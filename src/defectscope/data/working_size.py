"""`data.image_size: auto`: one working shape from the shapes of the good training images."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .config import AutoSize
from .errors import DataError
from .image_io import image_size
from .sample import Record


@dataclass(frozen=True)
class ResolvedSize:
    """The working size `auto` chose, and what it was chosen from (for the log and the results)."""

    height: int
    width: int
    aspect: float  # the images' median height / width
    images: int  # how many training images were measured
    pixels: int  # the budget asked for
    multiple: int
    square: bool  # the model needs square inputs, so the aspect ratio was not used

    def describe(self) -> str:
        shape = "a square: the model needs square inputs" if self.square else \
            f"median height/width {self.aspect:.3g} of {self.images} training images"
        return (f"data.image_size: auto → [{self.height}, {self.width}] ({shape}; about {self.pixels:,} px, "
                f"sides multiples of {self.multiple})")


def working_shape(aspect: float, pixels: int, multiple: int) -> tuple[int, int]:
    """(height, width) near `pixels` pixels with height / width near `aspect`, each a multiple of `multiple`.

    Each side is rounded to its nearest multiple (never below one), so each side is within half
    a multiple of the exact shape; at extreme aspect ratios the short side's rounding moves the
    pixel count by up to a quarter.
    """
    if not (aspect > 0 and math.isfinite(aspect)):
        raise ValueError(f"aspect ratio must be positive and finite, got {aspect}")
    height = math.sqrt(pixels * aspect)
    width = pixels / height
    return tuple(max(multiple, multiple * round(side / multiple)) for side in (height, width))  # type: ignore[return-value]


def median_aspect(sizes: Iterable[tuple[int, int]]) -> float:
    """The median of height / width over (width, height) sizes; a median, so a few odd images do not move it."""
    ratios = [height / width for width, height in sizes]
    if not ratios:
        raise DataError("data.image_size: auto needs at least one training image to measure")
    return statistics.median(ratios)


def resolve_auto(auto: AutoSize, records: Sequence[Record], *, square: bool, skip_bad: bool = False) -> ResolvedSize:
    """The working size for `records` (the good training images); only their headers are read.

    An unreadable file is an error naming it, or left out with `skip_bad` (the dataset then
    skips it too).
    """
    if square:
        side = working_shape(1.0, auto.pixels, auto.multiple)[0]
        return ResolvedSize(side, side, 1.0, len(records), auto.pixels, auto.multiple, square=True)
    sizes = []
    for record in records:
        try:
            sizes.append(image_size(record.image_path))
        except DataError:
            if not skip_bad:
                raise
    aspect = median_aspect(sizes)
    height, width = working_shape(aspect, auto.pixels, auto.multiple)
    return ResolvedSize(height, width, aspect, len(sizes), auto.pixels, auto.multiple, square=False)
