"""The torch side of the scoring path: a model as the `Network` that `defectscope.scoring` drives.

Everything after the network (tiles, stitching, border, standardisation, image score, verdict)
is `defectscope.scoring.path`, shared with the exported graph's runtime.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from contextlib import AbstractContextManager

import numpy as np
import torch

from defectscope.data.config import DataConfig, Tiling
from defectscope.models.base import AnomalyModel
from defectscope.scoring.path import Network, TileGrid, Viewing


def viewing_of(data: DataConfig) -> Viewing:
    """How a run's model looks at images: its working size, resize and tiles."""
    tiling = data.tiling
    grid = TileGrid(tiling.tile, tiling.stride, tiling.merge) if isinstance(tiling, Tiling) else None
    return Viewing.of(data.image_size, data.resize, grid)


def torch_network(model: AnomalyModel, device: torch.device,
                  guard: Callable[[], AbstractContextManager[object]] | None = None) -> Network:
    """`model.predict` on numpy batches: float32 maps and scores come back on the CPU.

    The model must be in eval mode. Each call runs inside `guard()` where one is given: the
    `Detector`'s shared lock, which keeps a change of the model (absorb) out of a running call.
    """

    @torch.no_grad()
    def run(images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
        ids = torch.from_numpy(np.ascontiguousarray(class_ids, dtype=np.int64)).to(device)
        with guard() if guard is not None else contextlib.nullcontext():
            out = model.predict(x, ids)
        return out.anomaly_map.float().cpu().numpy(), out.image_score.float().cpu().numpy()

    return run
