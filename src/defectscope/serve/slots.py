"""Image slots taken first come, first served, and giving freed heap back to the system after a burst."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any


class Slots:
    """A counting semaphore whose takers are served in arrival order, whatever each asks for.

    A batch that needs four slots at once waits at the head of the line until four are free; a
    single request that arrives after it waits behind it instead of taking the slot that has just
    been freed. (A plain "wait until enough are free" lets a stream of single requests starve the
    batch forever.) Every taker asks for at most `capacity` and none waits while holding slots, so
    the head of the line always gets its slots once the holders finish.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._free = capacity
        self._line: deque[object] = deque()
        self._cond = threading.Condition()

    @property
    def idle(self) -> bool:
        """No slot held and nobody waiting."""
        with self._cond:
            return self._free == self.capacity and not self._line

    @contextlib.contextmanager
    def take(self, count: int) -> Iterator[None]:
        count = max(1, min(count, self.capacity))
        ticket = object()
        with self._cond:
            self._line.append(ticket)
            try:
                self._cond.wait_for(lambda: self._line[0] is ticket and self._free >= count)
            finally:
                self._line.remove(ticket)  # served, or gave up (an exception while waiting)
                self._cond.notify_all()  # the next in line may fit in what is left
            self._free -= count
        try:
            yield
        finally:
            with self._cond:
                self._free += count
                self._cond.notify_all()


def _libc(function: str, argtypes: list[Any]) -> Any | None:
    """A glibc function with its C signature, or None where the C library has none (musl, macOS, Windows)."""
    name = ctypes.util.find_library("c")
    try:
        found = getattr(ctypes.CDLL(name), function) if name else None
    except (OSError, AttributeError):
        return None
    if found is not None:
        found.argtypes, found.restype = argtypes, ctypes.c_int
    return found


def _malloc_trim() -> Callable[[], None] | None:
    """glibc's malloc_trim(0), or None where the C library has none."""
    trim = _libc("malloc_trim", [ctypes.c_size_t])
    return None if trim is None else lambda: trim(0)


M_ARENA_MAX = -8  # glibc's mallopt parameter number (malloc.h)


def limit_heap_arenas(count: int) -> bool:
    """At most `count` glibc heaps (arenas) for all threads; False where that cannot be set.

    glibc gives a thread that finds the heaps busy a new one, up to eight per core, and a heap
    keeps the pages its thread freed. Each of the service's worker threads decodes, scores and
    draws overlays in turn, so over a burst each grows its own heap to the largest request it
    handled: the served PatchCore's peak was 1,434–1,491 MiB with the default and 1,038 MiB with
    two heaps, at the same requests/s (docs/deploy.md). A MALLOC_ARENA_MAX in the environment wins.
    """
    if count < 1 or "MALLOC_ARENA_MAX" in os.environ:
        return False
    mallopt = _libc("mallopt", [ctypes.c_int, ctypes.c_int])
    if mallopt is None:
        return False
    return mallopt(M_ARENA_MAX, count) == 1


class HeapTrim:
    """After a burst, once the service has been idle a moment, hand the heap's free pages back.

    glibc keeps what a worker thread freed in that thread's arena; after a burst of large images
    the process stays hundreds of MiB above its resting size although nothing is in use.
    `malloc_trim(0)` returns those pages. It runs only when work happened since the last trim and
    no image slot is held, at most once per `interval` seconds; elsewhere it does nothing.
    """

    def __init__(self, slots: Slots, interval: float = 2.0) -> None:
        self.slots = slots
        self.interval = interval
        self.trims = 0
        self._trim = _malloc_trim()
        self._dirty = False
        self._last_work = 0.0

    @property
    def available(self) -> bool:
        return self._trim is not None

    def worked(self) -> None:
        self._dirty = True
        self._last_work = time.monotonic()

    def maybe_trim(self) -> bool:
        """Trim if there was work, it ended at least `interval` seconds ago and nothing is in flight now."""
        if self._trim is None or not self._dirty or time.monotonic() - self._last_work < self.interval:
            return False
        if not self.slots.idle:
            return False
        self._dirty = False
        self._trim()
        self.trims += 1
        return True
