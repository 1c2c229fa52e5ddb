"""The memory bank: coreset patch features, searched by exact nearest neighbour in chunks.

Its size is known only after fitting, so the bank buffer takes the shape of whatever a
checkpoint holds when loaded. While collecting, features stream in per batch and are
reduced to their coreset every `chunk` patches, so memory stays bounded by one chunk plus
the bank instead of every training patch.
"""

from __future__ import annotations

import time
from typing import Any

import torch
from torch import Tensor, nn

from defectscope.models.patchcore.coreset import greedy_coreset


class MemoryBank(nn.Module):
    def __init__(self, dim: int, ratio: float = 0.1, chunk: int = 16384, projection_dim: int = 128,
                 seed: int = 0, search: str = "torch") -> None:
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"patchcore: coreset_ratio must be in (0, 1], got {ratio}")
        if search not in ("torch", "faiss"):
            raise ValueError(f"patchcore: search must be 'torch' or 'faiss', got {search!r}")
        self.search = search
        self._faiss_index = None  # (bank identity, index): built on first search from the current bank
        self.dim, self.ratio, self.chunk, self.projection_dim, self.seed = dim, ratio, chunk, projection_dim, seed
        self.register_buffer("bank", torch.zeros(0, dim))
        self._pending: list[Tensor] = []
        self._kept: list[Tensor] = []
        self._pending_rows = 0
        self.patches_seen = 0
        self.coreset_seconds = 0.0
        self._collecting = False

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any, **kwargs: Any) -> None:
        key = prefix + "bank"
        if key in state_dict:  # take the stored bank's size
            self.bank = torch.empty_like(state_dict[key], device=self.bank.device, dtype=self.bank.dtype)
        self._faiss_index = None
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    # --- building -------------------------------------------------------------------------

    def reset(self) -> None:
        self._pending, self._kept, self._pending_rows = [], [], 0
        self.patches_seen, self.coreset_seconds = 0, 0.0

    def add(self, patches: Tensor) -> None:
        """(n, dim) patch features of one batch; the first batch after `finish` starts a new bank."""
        if not self._collecting:
            self.reset()
            self._collecting = True
        self._pending.append(patches.detach())
        self._pending_rows += len(patches)
        self.patches_seen += len(patches)
        while self.chunk > 0 and self._pending_rows >= self.chunk:
            rows = torch.cat(self._pending)
            self._reduce(rows[: self.chunk])
            rest = rows[self.chunk :]
            self._pending, self._pending_rows = ([rest] if len(rest) else []), len(rest)

    def _reduce(self, rows: Tensor) -> None:
        began = time.perf_counter()
        k = max(1, round(self.ratio * len(rows)))
        keep = greedy_coreset(rows, k, self.projection_dim, self.seed + self.patches_seen)
        self._kept.append(rows[keep])
        self.coreset_seconds += time.perf_counter() - began

    def finish(self) -> None:
        if self._pending_rows:
            self._reduce(torch.cat(self._pending))
        if not self._kept:
            raise RuntimeError("patchcore: no training patches were collected")
        self.bank = torch.cat(self._kept).contiguous()
        self._pending, self._kept, self._pending_rows = [], [], 0
        self._collecting = False

    # --- searching ------------------------------------------------------------------------

    def nearest(self, queries: Tensor, k: int = 1, budget: int = 1 << 24) -> tuple[Tensor, Tensor]:
        """Euclidean distances (n, k) and bank indices (n, k) of the k nearest bank patches.

        Queries go in chunks whose distance block holds at most `budget` values (64 MiB).
        """
        if len(self.bank) == 0:
            raise RuntimeError("patchcore: the memory bank is empty; fit the model first (defectscope train)")
        k = min(k, len(self.bank))
        bank = self.bank
        bank_norms = (bank * bank).sum(dim=1)
        if torch.onnx.is_in_onnx_export():  # a traced graph: the batch is symbolic, the bank's size is not; no faiss
            return _nearest_in_bank_chunks(queries, bank, bank_norms) if k == 1 else _nearest_block(
                queries, bank, bank_norms, k)
        if self.search == "faiss" and self.bank.device.type == "cpu":
            return self._nearest_faiss(queries, k)
        chunk = max(1, budget // len(self.bank))
        blocks = [_nearest_block(queries[start : start + chunk], bank, bank_norms, k)
                  for start in range(0, len(queries), chunk)]
        return torch.cat([d for d, _ in blocks]), torch.cat([i for _, i in blocks])

    def _nearest_faiss(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        try:
            import faiss
        except ImportError as err:
            raise RuntimeError("patchcore: search 'faiss' needs the faiss-cpu package "
                               "(pip install faiss-cpu), or use --model.search torch") from err
        identity = (self.bank.data_ptr(), tuple(self.bank.shape))
        if self._faiss_index is None or self._faiss_index[0] != identity:
            index = faiss.IndexFlatL2(self.bank.shape[1])
            index.add(self.bank.detach().float().contiguous().numpy())
            self._faiss_index = (identity, index)
        d2, where = self._faiss_index[1].search(queries.detach().float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(d2).clamp_min_(0).sqrt_().to(queries.dtype), torch.from_numpy(where)


def _nearest_block(queries: Tensor, bank: Tensor, bank_norms: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Exact k nearest bank rows of one block of queries: distances (n, k) and indices (n, k)."""
    # ‖q − m‖² = ‖q‖² − 2 q·m + ‖m‖², one matrix product per block of queries; ‖q‖² is the same for
    # every m of a row, so it is added to the k found, not to the whole block (one pass less over it)
    d2 = torch.addmm(bank_norms[None], queries, bank.T, alpha=-2.0)
    values, where = d2.topk(k, dim=1, largest=False) if k > 1 else d2.min(dim=1, keepdim=True)
    return values.add_((queries * queries).sum(dim=1, keepdim=True)).clamp_min_(0).sqrt_(), where


# bank rows per distance block in an exported graph: its queries are a whole batch's patches (the
# batch is symbolic there, so they cannot be cut), so the bank is cut instead; with the running
# minimum below and onnxruntime's memory pattern off, one image at 256 px holds 1024 · 4096 · 4 B =
# 16 MiB of distances at a time instead of the whole bank's block (287 MiB for a 70,000-patch bank)
EXPORT_BANK_CHUNK = 4096


def _nearest_in_bank_chunks(queries: Tensor, bank: Tensor, bank_norms: Tensor) -> tuple[Tensor, Tensor]:
    """The nearest bank row (k = 1) of every query, one block of bank rows at a time.

    A running minimum, so each block's distances are used up before the next block's are made:
    onnxruntime then frees (and reuses) every block, where blocks joined only at the end would all
    be held at once.
    """
    best, where = _nearest_block(queries, bank[:EXPORT_BANK_CHUNK], bank_norms[:EXPORT_BANK_CHUNK], 1)
    for start in range(EXPORT_BANK_CHUNK, len(bank), EXPORT_BANK_CHUNK):
        stop = start + EXPORT_BANK_CHUNK
        d, i = _nearest_block(queries, bank[start:stop], bank_norms[start:stop], 1)
        closer = d < best
        best, where = torch.where(closer, d, best), torch.where(closer, i + start, where)
    return best, where
