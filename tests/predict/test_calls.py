"""How many batches predict scores at once, and on how many threads each."""

import threading
from pathlib import Path

import pytest

from defectscope.export import runtime
from defectscope.predict.job import PredictOptions, plan_calls


def options(**kwargs) -> PredictOptions:
    return PredictOptions(model="m", inputs=("x",), output=Path("out"), **kwargs)


@pytest.mark.parametrize(("cores", "given", "on_cpu", "distributed", "expected"), [
    (2, {}, True, False, (2, 1)),  # a line PC: two calls of one core each
    (8, {}, True, False, (2, 4)),
    (1, {}, True, False, (1, None)),  # one core: one call, the runtime's default threads
    (2, {}, False, False, (1, None)),  # a GPU runs one call
    (2, {}, True, True, (1, None)),  # under torchrun each rank is a process of its own
    (2, {"threads": 2}, True, False, (1, 2)),  # the user's threads fill the cores: one call
    (8, {"threads": 2}, True, False, (2, 2)),
    (2, {"concurrent_calls": 3}, True, False, (3, 1)),  # asked for: as asked
    (2, {"concurrent_calls": 1}, True, False, (1, None)),
])
def test_calls_and_threads(monkeypatch, cores, given, on_cpu, distributed, expected):
    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    assert plan_calls(options(**given), on_cpu, distributed) == expected


def test_a_search_in_another_thread_takes_torchs_thread_count():
    """OpenMP's thread count belongs to each thread: without setting it, a second scoring thread's
    faiss search would take every core whatever --threads says."""
    faiss = pytest.importorskip("faiss")
    import torch

    from defectscope.models.patchcore.config import HnswSearch
    from defectscope.models.patchcore.memory_bank import MemoryBank

    bank = MemoryBank(4, search=HnswSearch())
    bank.bank = torch.randn(64, 4)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        seen: list[int] = []

        def search() -> None:
            bank.nearest_patches(torch.randn(8, 4))
            seen.append(faiss.omp_get_max_threads())

        thread = threading.Thread(target=search)
        thread.start()
        thread.join(30)
        assert seen == [1]
    finally:
        torch.set_num_threads(before)
