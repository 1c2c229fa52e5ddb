"""A frozen backbone's feature maps computed once per image and reused, while a run passes over the same images again.

Cross-fitting fits K fold models and the shipped one on the same good parts with the same frozen
backbone: without a cache every image goes through the backbone K + 1 times (a third of `fit`'s
time on MVTec bottle and MTSD, docs/results/calibration.md). An entry is keyed by the exact input tensor (its
bytes, shape and dtype) and by the backbone (its settings, taps and every weight), so a different
resize, tile, backbone or weight is a miss, never a wrong hit. It holds the backbone's taps, each
at its own stride (the aggregation onto the finest grid is redone on use: a fifth of the memory
for EfficientNet-Lite0's three taps). Entries stay on the CPU; a budget bounds the memory, and
images beyond it are computed as if there were no cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable

import numpy as np
import torch
from torch import Tensor

Extractor = Callable[[Tensor], list[Tensor]]  # (B, 3, H, W) → maps (B, C_i, h_i, w_i)


def digest_of(tensor: Tensor) -> bytes:
    """A digest of a tensor's values, shape and dtype (sha256: CPUs hash it in hardware, 2× blake2b's speed)."""
    h = hashlib.sha256()
    h.update(f"{tuple(tensor.shape)}{tensor.dtype}".encode())
    array = tensor.detach().cpu().contiguous()
    if array.dtype == torch.bfloat16:  # numpy has no bfloat16: its bits as int16
        array = array.view(torch.int16)
    h.update(np.ascontiguousarray(array.numpy()).data)
    return h.digest()


def weights_digest(description: str, tensors: Iterable[Tensor]) -> bytes:
    """The extractor's identity: its settings and every weight's values (a random backbone differs per build)."""
    h = hashlib.sha256(description.encode())
    for t in tensors:
        h.update(digest_of(t))
    return h.digest()


class FeatureCache:
    """Per-image feature maps, keyed by (extractor, image); at most `max_bytes` held, first come first kept."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: dict[tuple[bytes, bytes], tuple[Tensor, ...]] = {}
        self.held_bytes = self.computed = self.reused = 0

    def features(self, extractor_key: bytes, images: Tensor, compute: Extractor) -> list[Tensor]:
        """`compute(images)`, with the images already seen taken from the cache and only the others computed."""
        keys = [(extractor_key, digest_of(image)) for image in images]
        missing = [i for i, key in enumerate(keys) if key not in self.entries]
        self.reused += len(keys) - len(missing)
        self.computed += len(missing)
        if len(missing) == len(keys):
            computed = compute(images)
            self._keep(keys, computed)
            return computed
        found: dict[int, tuple[Tensor, ...]] = {}
        if missing:
            computed = compute(images[missing])
            self._keep([keys[i] for i in missing], computed)
            found = {i: tuple(m[j] for m in computed) for j, i in enumerate(missing)}
        rows = [found[i] if i in found else self.entries[key] for i, key in enumerate(keys)]
        return [torch.stack([row[m].to(images.device) for row in rows]) for m in range(len(rows[0]))]

    def _keep(self, keys: list[tuple[bytes, bytes]], computed: list[Tensor]) -> None:
        for j, key in enumerate(keys):
            if key in self.entries:  # the same image twice in one batch (a duplicated file, a blank tile)
                continue
            maps = [m[j] for m in computed]
            size = sum(m.numel() * m.element_size() for m in maps)
            if self.held_bytes + size > self.max_bytes:
                return
            self.entries[key] = tuple(m.detach().to("cpu", copy=True) for m in maps)  # a copy: not the batch's
            self.held_bytes += size

    def summary(self) -> dict[str, float]:
        """For the run's train_summary.json: images computed, images reused, memory held."""
        return {"computed": self.computed, "reused": self.reused, "held_images": len(self.entries),
                "held_mib": round(self.held_bytes / 2**20, 1), "max_mib": round(self.max_bytes / 2**20, 1)}
