"""The one record type every reader produces and every model consumes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor


@dataclass(frozen=True)
class Record:
    """One image on disk, before decoding: what a layout reader returns."""

    image_path: Path
    mask_path: Path | None  # None for good images without a mask file
    label: int  # 0 = good, 1 = defective
    category: str  # e.g. "bottle", "mtsd", "01"
    defect_type: str  # "good" or the defect folder name


class Sample(NamedTuple):
    """A decoded, resized item; torch's default collate stacks it field by field."""

    image: Tensor  # (3, H, W) float32 in [0, 1]
    mask: Tensor  # (1, H, W) float32 in {0, 1}
    label: int
    class_id: int
    path: str
    box: Tensor  # (4,) int64: top, left, height, width of the image's own pixels (the rest is border)
    original_size: Tensor  # (2,) int64: height, width as read from the file


def whole_sample(
    image: Tensor, mask: Tensor | None = None, label: int = 0, class_id: int = 0, path: str = ""
) -> Sample:
    """A sample that is all image (no border) at its own size: for data made in memory."""
    height, width = image.shape[-2:]
    return Sample(image, mask if mask is not None else torch.zeros(1, height, width), label, class_id, path,
                  torch.tensor([0, 0, height, width]), torch.tensor([height, width]))
