"""The memory bank: coreset patch features, searched by nearest neighbour (exact in chunks, or
faiss's exact or HNSW index).

Its size is known only after fitting, so the bank buffer takes the shape of whatever a
checkpoint holds when loaded. While collecting, features stream in per batch and are
reduced to their coreset every `chunk` patches, so memory stays bounded by one chunk plus
the bank instead of every training patch.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor, nn

from defectscope.errors import UserError
from defectscope.models.patchcore.config import HnswSearch, Search, TorchSearch
from defectscope.models.patchcore.coreset import greedy_coreset


class SearchUnavailable(UserError):
    """The configured search needs a package this machine lacks."""


def _faiss(search: Search) -> Any:
    try:
        import faiss
    except ImportError as err:
        raise SearchUnavailable(
            f"patchcore: model.search '{search.kind}' needs the faiss-cpu package: pip install \"defectscope[faiss]\" "
            "(or fit with model.search torch, the exact search in torch: the same image scores, slower)") from err
    return faiss


# set by `exact_search()`: a scoped request, like torch.no_grad, not a setting of the model
_EXACT = contextvars.ContextVar("patchcore_exact_search", default=False)


@contextlib.contextmanager
def exact_search() -> Iterator[None]:
    """Search every bank exactly inside this block, whatever its config says: what an exported
    graph computes, so its parity is checked against the same search."""
    token = _EXACT.set(True)
    try:
        yield
    finally:
        _EXACT.reset(token)


class MemoryBank(nn.Module):
    def __init__(self, dim: int, ratio: float = 0.1, chunk: int = 16384, projection_dim: int = 128,
                 seed: int = 0, search: Search | None = None) -> None:
        super().__init__()
        if not 0 < ratio <= 1:
            raise ValueError(f"patchcore: coreset_ratio must be in (0, 1], got {ratio}")
        self.search = TorchSearch() if search is None else search
        if self.search.kind != "torch":
            _faiss(self.search)  # missing, say so now: before a bank is collected, or when a checkpoint loads
        # a loaded bank gets its index at once, not on the first part a service scores (seconds for HNSW)
        self.register_load_state_dict_post_hook(lambda module, _: module.prepare_index())
        self._faiss_index = None  # (bank identity, index): built on first search from the current bank
        self._bank_norms: tuple[tuple[int, tuple[int, ...]], Tensor] | None = None  # ‖m‖² per row, same key
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
        self._faiss_index = self._bank_norms = None
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

    @property
    def approximate(self) -> bool:
        """Whether `nearest_patches` may return a farther bank patch than the nearest: HNSW, on a
        CPU (faiss-cpu; a bank on a GPU is searched exactly there)."""
        return (isinstance(self.search, HnswSearch) and self.bank.device.type == "cpu" and not _EXACT.get()
                and not torch.onnx.is_in_onnx_export())

    def _identity(self) -> tuple[int, tuple[int, ...]]:
        return self.bank.data_ptr(), tuple(self.bank.shape)

    def bank_norms(self) -> Tensor:
        """‖m‖² of every bank row, kept until the bank changes (recomputing it cost a pass over the
        bank per search)."""
        if torch.onnx.is_in_onnx_export():  # a traced graph computes it from the bank it holds
            return (self.bank * self.bank).sum(dim=1)
        if self._bank_norms is None or self._bank_norms[0] != self._identity():
            self._bank_norms = (self._identity(), (self.bank * self.bank).sum(dim=1))
        return self._bank_norms[1]

    def nearest(self, queries: Tensor, k: int = 1, budget: int = 1 << 24) -> tuple[Tensor, Tensor]:
        """Exact Euclidean distances (n, k) and bank indices (n, k) of the k nearest bank patches.

        Queries go in chunks whose distance block holds at most `budget` values (64 MiB).
        """
        self._check_filled()
        k = min(k, len(self.bank))
        bank = self.bank
        bank_norms = self.bank_norms()
        if torch.onnx.is_in_onnx_export():  # a traced graph: the batch is symbolic, the bank's size is not; no faiss
            return _nearest_in_bank_chunks(queries, bank, bank_norms) if k == 1 else _nearest_block(
                queries, bank, bank_norms, k)
        if self.search.kind == "faiss" and self.bank.device.type == "cpu":
            return self._faiss_search(queries, k)
        chunk = max(1, budget // len(self.bank))
        blocks = [_nearest_block(queries[start : start + chunk], bank, bank_norms, k)
                  for start in range(0, len(queries), chunk)]
        return torch.cat([d for d, _ in blocks]), torch.cat([i for _, i in blocks])

    def nearest_patches(self, queries: Tensor) -> tuple[Tensor, Tensor]:
        """Distance (n,) and index (n,) of a near bank patch for every query: the nearest with an
        exact search; with HNSW a bank patch at least as far as the nearest (see `refine_maxima`)."""
        if self.approximate:
            self._check_filled()
            d, i = self._faiss_search(queries, 1)
        else:
            d, i = self.nearest(queries, k=1)
        return d[:, 0], i[:, 0]

    def refine_maxima(self, distances: Tensor, indices: Tensor, queries: Tensor, neighbours: int = 1,
                      block: int = 8) -> dict[int, Tensor]:
        """Make each row's largest distance exact, in place: (B, P) approximate distances and
        indices of (B, P, C) queries.

        An approximate distance is never below the exact one (it is the distance to a real bank
        patch). So the patches are searched exactly from the farthest down, a block at a time,
        until the next one's approximate distance is at most the largest exact one found: no
        patch left can be farther. That patch, its distance and its bank index are then exactly
        the exact search's.

        Eq. 7 then needs the `neighbours` nearest bank patches of that bank index (m*), another
        pass over the bank. The farthest patch is nearly always in the first block and the graph
        nearly always matched it right, so the neighbours of the graph's matches of the first
        block ride along in the first exact pass; returned as {bank index: (neighbours,)
        indices}, for `reweighted_image_score` to use where m* is among them.
        """
        found: dict[int, Tensor] = {}
        if not self.approximate:
            return found
        for row in range(distances.shape[0]):
            order = torch.argsort(distances[row], descending=True)
            best, done = -1.0, 0
            while done < len(order) and float(distances[row, order[done]]) > best:
                chosen = order[done : done + block]
                guesses = indices[row, chosen].unique() if neighbours > 1 and done == 0 else indices[row, :0]
                exact, where = self.nearest(torch.cat([queries[row, chosen], self.bank[guesses]]),
                                            k=neighbours if len(guesses) else 1)
                found.update(zip(guesses.tolist(), where[len(chosen):], strict=True))
                exact, where = exact[: len(chosen)], where[: len(chosen)]
                distances[row, chosen], indices[row, chosen] = exact[:, 0], where[:, 0]
                best, done = max(best, float(exact[:, 0].max())), done + len(chosen)
        return found

    def prepare_index(self) -> None:
        """Build faiss's index over the current bank now (a faiss search on a CPU; else nothing)."""
        if self.search.kind != "torch" and self.bank.device.type == "cpu" and len(self.bank):
            self._index()

    def _index(self) -> Any:
        if self._faiss_index is None or self._faiss_index[0] != self._identity():
            self._faiss_index = (self._identity(), _build_index(_faiss(self.search), self.search, self.bank))
        return self._faiss_index[1]

    def _check_filled(self) -> None:
        if len(self.bank) == 0:
            raise RuntimeError("patchcore: the memory bank is empty; fit the model first (defectscope train)")

    def _faiss_search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        d2, where = self._index().search(queries.detach().float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(d2).clamp_min_(0).sqrt_().to(queries.dtype), torch.from_numpy(where)


def _build_index(faiss: Any, search: Search, bank: Tensor) -> Any:
    """faiss's index over the bank: exact (IndexFlatL2) or HNSW, the graph built on one thread (a
    parallel build links nodes in a different order each time, so two builds would differ)."""
    rows = bank.detach().float().cpu().contiguous().numpy()
    if not isinstance(search, HnswSearch):
        index = faiss.IndexFlatL2(rows.shape[1])
        index.add(rows)
        return index
    index = faiss.IndexHNSWFlat(rows.shape[1], search.links)
    index.hnsw.efConstruction = search.build_candidates
    index.hnsw.efSearch = search.candidates
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(rows)
    finally:
        faiss.omp_set_num_threads(threads)
    return index


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
