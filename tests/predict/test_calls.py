"""How many batches predict scores at once, and on how many threads each."""

import threading
from pathlib import Path

import pytest

from defectscope.export import runtime
from defectscope.predict.job import PredictOptions, plan_calls


def options(**kwargs) -> PredictOptions:
    return PredictOptions(model="m", inputs=("x",), output=Path("out"), **kwargs)


@pytest.mark.parametrize(("cores", "given", "side_by_side", "expected"), [
    (2, {}, True, (2, 1)),  # a checkpoint on a line PC: two calls of one core each
    (8, {}, True, (2, 4)),
    (1, {}, True, (1, None)),  # one core: one call, the runtime's default threads
    (2, {}, False, (1, None)),  # a GPU, a rank under torchrun, an exported graph: one call
    (2, {"threads": 2}, True, (1, 2)),  # the user's threads fill the cores: one call
    (8, {"threads": 2}, True, (2, 2)),
    (2, {"concurrent_calls": 3}, True, (3, 1)),  # asked for: as asked
    (2, {"concurrent_calls": 2}, False, (2, 1)),
    (2, {"concurrent_calls": 1}, True, (1, None)),
])
def test_calls_and_threads(monkeypatch, cores, given, side_by_side, expected):
    monkeypatch.setattr(runtime, "available_cores", lambda: cores)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert plan_calls(options(**given), side_by_side, batches=10) == expected


def test_a_lone_batch_keeps_every_core(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert plan_calls(options(), True, batches=1) == (1, None)
    assert plan_calls(options(concurrent_calls=2), True, batches=1) == (1, None)
    assert plan_calls(options(), True, batches=0) == (1, None)  # nothing to score


def test_a_thread_budget_in_the_environment_keeps_one_call(monkeypatch):
    monkeypatch.setattr(runtime, "available_cores", lambda: 8)
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert plan_calls(options(), True, batches=10) == (1, None)
    assert plan_calls(options(concurrent_calls=2), True, batches=10) == (2, 4)  # asked for: as asked


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
            faiss.omp_set_num_threads(3)  # whatever this thread had: the search takes torch's count
            bank.nearest_patches(torch.randn(8, 4))
            seen.append(faiss.omp_get_max_threads())

        thread = threading.Thread(target=search)
        thread.start()
        thread.join(30)
        assert seen == [1]
    finally:
        torch.set_num_threads(before)
