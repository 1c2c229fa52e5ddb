"""Requests that wait for the model together are scored in one network call.

At most `max_calls` score calls run at once (serve's `--concurrent-calls`). While they run, the
parts of other clients queue; scoring them one call each repeats, per part, what a batch does
once: PatchCore's exact pass over the bank after its graph search, the backbone's per-call
overhead. Here the thread whose request finds a call free scores everything waiting with the
same class, up to `max_images`, in one `score` call, and hands each request its own detections.
Nobody waits for a batch to fill: a lone client is scored at once, exactly as without this.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from defectscope.detection import Detection

Score = Callable[[Sequence[np.ndarray], str | None], list[Detection]]


@dataclass(eq=False)
class _Request:
    images: Sequence[np.ndarray]
    class_name: str | None
    detections: list[Detection] = field(default_factory=list)
    error: BaseException | None = None
    taken: bool = False  # in a call (its own thread's or another's)
    done: bool = False


class Coalescer:
    """`score(images, class_name)` as the detector's, safe from many threads; concurrent calls share batches.

    `score` itself must be safe to call from `max_calls` threads at once.
    """

    def __init__(self, score: Score, max_images: int, max_calls: int = 1) -> None:
        if max_images < 1:
            raise ValueError(f"max_images must be at least 1, got {max_images}")
        if max_calls < 1:
            raise ValueError(f"max_calls must be at least 1, got {max_calls}")
        self._score = score
        self.max_images = max_images
        self.max_calls = max_calls
        self._waiting: deque[_Request] = deque()
        self._running = 0  # score calls in flight
        self._cond = threading.Condition()
        self.calls = 0  # network-side score calls made (for /health-style counters and tests)

    def score(self, images: Sequence[np.ndarray], class_name: str | None = None) -> list[Detection]:
        mine = _Request(images, class_name)
        with self._cond:
            self._waiting.append(mine)
        while True:
            batch: list[_Request] = []
            try:  # opened before the batch is taken: whatever stops this thread, its batch is finished
                with self._cond:
                    # a request taken into another thread's call waits for that call only: running
                    # someone else's batch meanwhile would hold back its answer once it is ready
                    self._cond.wait_for(lambda: mine.done or (not mine.taken and self._running < self.max_calls))
                    if mine.done:
                        break
                    self._running += 1
                    batch = self._take()
                self._run(batch)
            finally:
                if batch:
                    self._finish(batch)
        if mine.error is not None:
            raise mine.error
        return mine.detections

    def _take(self) -> list[_Request]:
        """The oldest request, and those behind it of the same class while the images fit (first come, first served)."""
        head = self._waiting.popleft()
        head.taken = True
        batch, count = [head], len(head.images)
        for request in list(self._waiting):
            if request.class_name == head.class_name and count + len(request.images) <= self.max_images:
                self._waiting.remove(request)
                request.taken = True
                batch.append(request)
                count += len(request.images)
        return batch

    def _run(self, batch: list[_Request]) -> None:
        try:
            self._answer(batch)
        except Exception as err:  # noqa: BLE001 - handed to the requests' own threads, raised there
            if len(batch) == 1:
                batch[0].error = err
            else:  # a part that breaks the model must fail its own request only: each again, alone
                for request in batch:
                    try:
                        self._answer([request])
                    except Exception as own:  # noqa: BLE001 - handed to the request's own thread
                        request.error = own
        # anything else (an interrupt, SystemExit) is not the parts' fault: not retried, it stops
        # this thread, and `_finish` tells the batch's other requests they were not answered

    def _finish(self, batch: list[_Request]) -> None:
        with self._cond:
            self.calls += 1
            for request in batch:
                if request.error is None and len(request.detections) != len(request.images):
                    request.error = RuntimeError(
                        f"scoring stopped before this request was answered ({len(request.detections)} "
                        f"detections for {len(request.images)} images)")
                request.done = True
            self._running -= 1
            self._cond.notify_all()

    def _answer(self, batch: list[_Request]) -> None:
        detections = self._score([image for r in batch for image in r.images], batch[0].class_name)
        start = 0
        for request in batch:
            request.detections = detections[start : start + len(request.images)]
            start += len(request.images)

