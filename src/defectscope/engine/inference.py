"""The torch side of the scoring path: a model as the `Network` that `defectscope.scoring` drives.

Everything after the network (tiles, stitching, border, standardisation, image score, verdict)
is `defectscope.scoring.path`, shared with the exported graph's runtime.
"""

from __future__ import annotations

import threading

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


def torch_network(model: AnomalyModel, device: torch.device, lock: threading.Lock | None = None) -> Network:
    """`model.predict` on numpy batches: float32 maps and scores come back on the CPU.

    The model must be in eval mode. `lock` serialises calls (torch modules are not promised
    thread-safe: buffers, caches) where several threads score at once.
    """

    @torch.no_grad()
    def run(images: np.ndarray, class_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32)).to(device)
        ids = torch.from_numpy(np.ascontiguousarray(class_ids, dtype=np.int64)).to(device)
        if lock is None:
            out = model.predict(x, ids)
        else:
            with lock:
                out = model.predict(x, ids)
        return out.anomaly_map.float().cpu().numpy(), out.image_score.float().cpu().numpy()

    return run
