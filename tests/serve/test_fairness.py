"""Image slots are taken first come, first served: a batch is never starved by a stream of single requests.

Before, `Slots.take(n)` waited until n slots were free at once; while single requests kept taking
each slot as it was freed that moment never came (a 16-image batch that takes 0.1 s idle had not
finished after 120 s).
"""

from __future__ import annotations

import threading
import time

import pytest

from defectscope.serve.slots import HeapTrim, Slots
from helpers.serving import encoded_image, needs_serve_extra, normal_images, start_server


def wait_until(condition, seconds: float = 10) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def test_a_waiting_batch_is_served_before_a_single_that_came_after_it():
    slots = Slots(2)
    order: list[str] = []
    release_first = threading.Event()

    def take(name: str, count: int, hold: threading.Event | None = None) -> None:
        with slots.take(count):
            order.append(name)
            if hold is not None:
                hold.wait(10)

    first = threading.Thread(target=take, args=("first", 1, release_first))
    first.start()
    wait_until(lambda: order == ["first"])
    batch = threading.Thread(target=take, args=("batch", 2))
    batch.start()
    wait_until(lambda: len(slots._line) == 1)  # the batch waits: one slot is free, it needs two
    single = threading.Thread(target=take, args=("single", 1))
    single.start()
    wait_until(lambda: len(slots._line) == 2)
    time.sleep(0.1)
    assert order == ["first"]  # the free slot was not handed to the single that came later
    release_first.set()
    for thread in (first, batch, single):
        thread.join(10)
    assert order == ["first", "batch", "single"]
    assert slots.idle


def test_a_request_asking_more_than_the_capacity_gets_all_of_it():
    slots = Slots(3)
    with slots.take(10):
        assert not slots.idle
    assert slots.idle


def test_heap_trim_runs_once_after_work_and_only_when_idle():
    slots = Slots(1)
    heap = HeapTrim(slots, interval=0.0)
    if not heap.available:
        pytest.skip("no glibc malloc_trim here")
    assert not heap.maybe_trim()  # no work yet
    heap.worked()
    with slots.take(1):
        assert not heap.maybe_trim()  # an image in flight
    assert heap.maybe_trim() and heap.trims == 1
    assert not heap.maybe_trim()  # nothing since


SINGLE_THREADS = 4
MAX_SINGLES = 600  # all threads together: the stream is bounded even if the batch never finishes (~5 s here)
BATCH_FILES = 8
BATCH_BOUND_S = 30.0


def test_a_batch_finishes_while_single_requests_keep_coming(tiny_checkpoint, tmp_path):
    """Real server, 2 image slots; 4 threads send single images back to back while one 8-image batch
    (4 rounds of 2 slots) must finish within 30 s; it takes well under 1 s on an idle server."""
    needs_serve_extra()
    import httpx

    server = start_server(tiny_checkpoint, tmp_path / "server.log", "--max-inflight-images", "2",
                          "--max-batch-files", str(BATCH_FILES))
    image = encoded_image(normal_images(1, size=64, seed=3)[0])
    batch_files = [("files", (f"{i}.png", image, "image/png")) for i in range(BATCH_FILES)]
    stop = threading.Event()
    sent = {"n": 0, "failed": 0}
    lock = threading.Lock()

    def singles() -> None:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            while not stop.is_set():
                with lock:
                    if sent["n"] >= MAX_SINGLES:
                        return
                    sent["n"] += 1
                r = client.post("/predict", params={"overlay": "false"}, files={"file": ("s.png", image, "image/png")})
                if r.status_code != 200:
                    with lock:
                        sent["failed"] += 1

    threads = [threading.Thread(target=singles) for _ in range(SINGLE_THREADS)]
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            began = time.monotonic()
            assert client.post("/predict/batch", params={"overlay": "false"}, files=batch_files).status_code == 200
            idle_s = time.monotonic() - began
            for thread in threads:
                thread.start()
            wait_until(lambda: sent["n"] >= 4 * SINGLE_THREADS, 60)  # the stream is flowing
            began = time.monotonic()
            try:
                r = client.post("/predict/batch", params={"overlay": "false"}, files=batch_files,
                                timeout=BATCH_BOUND_S)
                busy_s = time.monotonic() - began
            except httpx.TimeoutException:
                pytest.fail(f"the batch did not finish within {BATCH_BOUND_S} s while single requests kept coming "
                            f"({sent['n']} sent; {idle_s:.2f} s when idle)")
            singles_during = sent["n"]
        assert r.status_code == 200 and len(r.json()["results"]) == BATCH_FILES
        # unfair slots served the batch only once the stream had run dry (all 600 sent, ~5 s)
        assert singles_during < MAX_SINGLES // 2, (
            f"the batch finished only after {singles_during} single requests had been sent ({busy_s:.2f} s)")
        print(f"batch of {BATCH_FILES}: {idle_s:.2f} s idle, {busy_s:.2f} s beside a stream of single requests "
              f"({singles_during} sent by then)")
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
        server.stop()
    assert sent["failed"] == 0
