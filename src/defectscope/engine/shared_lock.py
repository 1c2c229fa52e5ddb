"""A lock that many scoring calls hold at once and a change to the model holds alone.

Scoring only reads the model (parameters, memory bank, search index), so two calls may run
side by side: on two cores a second call uses the time the first spends waiting on memory and
in Python (serve's `--concurrent-calls`, docs/deploy.md). Taking parts in (`absorb`) rewrites the
bank: it must wait for every call in flight, and no call may start while it runs. A change that
waits keeps new calls out until it has run, so a steady stream of requests cannot hold it off.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator


class SharedLock:
    """Readers share it, a writer holds it alone; a waiting writer goes before readers that come after it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    @contextlib.contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                if not self._readers:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            self._writers_waiting += 1
            try:
                self._cond.wait_for(lambda: not self._writing and not self._readers)
                self._writing = True
            finally:
                self._writers_waiting -= 1
                if not self._writing:  # the wait was interrupted: readers held back by it may go on
                    self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self._writing = False
                self._cond.notify_all()

    @property
    def readers(self) -> int:
        """Calls inside it now (tests and counters)."""
        with self._cond:
            return self._readers
