"""The map standardiser's place in a run: checked before training, stored beside the weights.

The standardiser itself (fit and apply, numpy) is `defectscope.scoring.path.MapStandardizer`,
which the exported runtime uses too. `eval.map_standardization: position`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from defectscope.config import ConfigError
from defectscope.scoring.path import MapStandardizer

TENSOR_PREFIX = "map_standardizer."


def require_held_out_images(mode: str, held_out: int) -> None:
    """Checked before training too, so a run cannot fail at the very end over its split."""
    if mode != "none" and held_out < 2:
        raise ConfigError(f"eval.map_standardization: {mode} needs at least 2 held-out normal images, "
                          f"the split has {held_out} (raise data.validation_fraction)")


def standardizer_tensors(standardizer: MapStandardizer) -> dict[str, Tensor]:
    """How the statistics are stored in a checkpoint, beside the weights."""
    return {TENSOR_PREFIX + "mean": torch.from_numpy(standardizer.mean).contiguous(),
            TENSOR_PREFIX + "std": torch.from_numpy(standardizer.std).contiguous()}


def pop_standardizer(state: dict[str, Tensor]) -> MapStandardizer | None:
    """Take the standardiser's tensors out of a checkpoint's state dict, if it has them."""
    mean = state.pop(TENSOR_PREFIX + "mean", None)
    std = state.pop(TENSOR_PREFIX + "std", None)
    if mean is None or std is None:
        return None
    return MapStandardizer(mean=mean.float().cpu().numpy(), std=std.float().cpu().numpy())
