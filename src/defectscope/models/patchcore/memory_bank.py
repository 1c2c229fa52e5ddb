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


def faiss_installed() -> bool:
    try:
        _faiss(HnswSearch())
    except SearchUnavailable:
        return False
    return True


def _faiss(search: Search) -> Any:
    try:
        import faiss
    except ImportError as err:
        raise SearchUnavailable(
            f"patchcore: model.search '{search.kind}' needs the faiss-cpu package: pip install \"defectscope[faiss]\" "
            "(or model.search torch, the exact search in torch: the same image scores, slower)") from err
    return faiss


def check_search(search: Search) -> None:
    """Fail before any work when the search needs faiss and it is missing (a run checks this first)."""
    if search.kind != "torch":
        _faiss(search)


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
        # faiss is needed only where a faiss search runs: a checkpoint loads, exports and scores on a
        # GPU without it; a run checks it before any work (check_search)
        self.search = TorchSearch() if search is None else search
        # derived from the bank, kept until it changes: (key, value), see `_current`
        self._faiss_index: tuple[tuple[Any, ...], Any] | None = None
        self._bank_norms: tuple[tuple[Any, ...], Tensor] | None = None  # ‖m‖² per row
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

    def _current(self, cached: tuple[Any, ...] | None, search: Search | None = None) -> bool:
        """Whether a cache entry was made from this very bank tensor, unmodified since (its version
        counter), and for this search. The entry holds the tensor itself, so its address cannot be
        reused by another bank while the entry lives."""
        return (cached is not None and cached[0] is self.bank and cached[1] == self.bank._version
                and cached[2] == search)

    def _stamp(self, search: Search | None = None) -> tuple[Any, ...]:
        return self.bank, self.bank._version, search

    def bank_norms(self) -> Tensor:
        """‖m‖² of every bank row, kept until the bank changes (recomputing it cost a pass over the
        bank per search)."""
        if torch.onnx.is_in_onnx_export():  # a traced graph computes it from the bank it holds
            return (self.bank * self.bank).sum(dim=1)
        if self._bank_norms is None or not self._current(self._bank_norms[0]):
            self._bank_norms = (self._stamp(), (self.bank * self.bank).sum(dim=1))
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
                      block: int = 8, budget: int = 1 << 24) -> dict[int, Tensor]:
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

        Every row's next block goes into one exact pass (in chunks of at most `budget` distances,
        each reduced at once): reading the bank, not the arithmetic, is what a pass costs, so a
        batch of B images pays about one pass instead of B.
        """
        found: dict[int, Tensor] = {}
        if not self.approximate:
            return found
        bank, norms = self.bank, self.bank_norms()
        rows = distances.shape[0]
        # faiss and torch round a distance differently (torch: ‖q‖² − 2q·m + ‖m‖², whose error grows
        # with the norms), so a graph distance may sit a rounding error below torch's exact one for
        # the same bank row: keep searching while the next one is within that error of the best
        slack = [1e-5 * (float(queries[r].square().sum(dim=1).max()) + float(norms.max())) for r in range(rows)]
        order = torch.argsort(distances, dim=1, descending=True)
        best, done = [-1.0] * rows, [0] * rows
        while True:
            active = [r for r in range(rows) if done[r] < order.shape[1] and (
                done[r] == 0 or float(distances[r, order[r, done[r]]]) ** 2 > best[r] ** 2 - slack[r])]
            if not active:
                return found
            # each pass searches as many patches as all before it: a part unlike every good one
            # (most of its patches far, the graph a little off on each) takes a few passes, not
            # one per block of eight, and never more patches than there are
            chosen = [order[r, done[r] : done[r] + max(block, done[r])] for r in active]
            asked = torch.cat([queries[r, c] for r, c in zip(active, chosen, strict=True)])
            first = [r for r, c in zip(active, chosen, strict=True) if done[r] == 0]
            guesses = (torch.cat([indices[r, order[r, :block]] for r in first]).unique()
                       if neighbours > 1 and first else indices[0, :0])
            near_d2, near, kin = _distance_blocks(torch.cat([asked, bank[guesses]]), bank, norms, budget,
                                                  len(asked), min(neighbours, len(bank)))
            if len(guesses):
                found.update(zip(guesses.tolist(), kin, strict=True))
            exact = near_d2.add_(asked.square().sum(dim=1)).clamp_min_(0).sqrt_()
            start = 0
            for r, c in zip(active, chosen, strict=True):
                mine, theirs = exact[start : start + len(c)], near[start : start + len(c)]
                start += len(c)
                distances[r, c], indices[r, c] = mine.to(distances.dtype), theirs
                top = float(mine.max())
                if top != top:  # NaN features: the score is NaN whatever else is searched
                    done[r] = order.shape[1]
                    continue
                best[r], done[r] = max(best[r], top), done[r] + len(c)

    def prepare_index(self) -> None:
        """Build faiss's index over the current bank now (a faiss search on a CPU; else nothing): a
        scorer calls it once the model is on its device, so no part waits for the build."""
        if self.search.kind != "torch" and self.bank.device.type == "cpu" and len(self.bank):
            self._index()

    def _index(self) -> Any:
        if self._faiss_index is None or not self._current(self._faiss_index[0], self.search):
            self._faiss_index = (self._stamp(self.search), _build_index(_faiss(self.search), self.search, self.bank))
        return self._faiss_index[1]

    def append(self, rows: Tensor) -> None:
        """Add rows to the bank (accepted good parts); an index built for the old bank takes them in
        place, on one thread as a build does, instead of being rebuilt from scratch."""
        index = self._faiss_index[1] if self._faiss_index and self._current(self._faiss_index[0], self.search) else None
        self.bank = torch.cat([self.bank, rows.to(self.bank.dtype)]).contiguous()
        if index is not None:
            _add_on_one_thread(_faiss(self.search), index, rows)
            self._faiss_index = (self._stamp(self.search), index)

    def _check_filled(self) -> None:
        if len(self.bank) == 0:
            raise RuntimeError("patchcore: the memory bank is empty; fit the model first (defectscope train)")

    def _faiss_search(self, queries: Tensor, k: int) -> tuple[Tensor, Tensor]:
        # OpenMP's thread count is the calling thread's own: a scoring thread other than the main one
        # (two calls at once in predict and serve) would take every core instead of torch's share
        _faiss(self.search).omp_set_num_threads(torch.get_num_threads())
        d2, where = self._index().search(queries.detach().float().cpu().contiguous().numpy(), k)
        return torch.from_numpy(d2).clamp_min_(0).sqrt_().to(queries.dtype), torch.from_numpy(where)


def _add_on_one_thread(faiss: Any, index: Any, rows: Tensor) -> None:
    threads = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        index.add(rows.detach().float().cpu().contiguous().numpy())
    finally:
        faiss.omp_set_num_threads(threads)


def _build_index(faiss: Any, search: Search, bank: Tensor) -> Any:
    """faiss's index over the bank: exact (IndexFlatL2) or HNSW, the graph built on one thread (a
    parallel build links nodes in a different order each time, so two builds would differ)."""
    if isinstance(search, HnswSearch):
        index = faiss.IndexHNSWFlat(bank.shape[1], search.links)
        index.hnsw.efConstruction = search.build_candidates
        index.hnsw.efSearch = search.candidates
    else:
        index = faiss.IndexFlatL2(bank.shape[1])
    _add_on_one_thread(faiss, index, bank)
    return index


def _distance_blocks(queries: Tensor, bank: Tensor, bank_norms: Tensor, budget: int, nearest: int,
                     k: int) -> tuple[Tensor, Tensor, Tensor]:
    """One pass over the bank for every query, in blocks of at most `budget` distances, each block
    reduced before the next (so memory stays at the budget however many queries): the first
    `nearest` queries get their nearest bank row (squared distance less ‖q‖², as `_nearest_block`
    computes it, and its index), the rest the indices of their `k` nearest rows."""
    chunk = max(1, budget // max(1, len(bank)))
    near_d2, near, kin = [], [], [bank_norms.new_empty((0, k), dtype=torch.long)]
    for start in range(0, len(queries), chunk):
        d2 = torch.addmm(bank_norms[None], queries[start : start + chunk], bank.T, alpha=-2.0)
        split = min(max(nearest - start, 0), len(d2))
        values, where = d2[:split].min(dim=1)  # min, as the exact search breaks ties
        near_d2.append(values)
        near.append(where)
        if split < len(d2):
            kin.append(d2[split:].topk(k, dim=1, largest=False).indices)
    return torch.cat(near_d2), torch.cat(near), torch.cat(kin)


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
