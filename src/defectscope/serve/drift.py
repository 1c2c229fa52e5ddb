"""Drift watch: the flagged share of the last N scored parts against the threshold's promise.

The threshold promises that a good part *like the held-out ones* is flagged with probability at
most `false_alarm_bound`. On a line where nearly every part is good, the flagged share of recent
parts estimates that probability from above (defects add to it). Its exact binomial
(Clopper–Pearson) interval's lower end above the bound says the good parts no longer look like
the held-out ones (lighting, camera, material moved), or many defects are coming: either way a
person should look, and recalibrate on recent good parts if the parts are fine.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable
from typing import Any

from defectscope.metrics.operating_point import binomial_interval

CONFIDENCE = 0.95


class DriftWatch:
    """The verdicts of the last `window` scored parts of each class, and what they say about the promise."""

    def __init__(self, window: int, promises: dict[str, dict[str, Any]]) -> None:
        if window < 1:
            raise ValueError(f"drift window must be at least 1, got {window}")
        self.window = window
        self.promises = promises  # class name → {false_alarm_rate, false_alarm_bound, held_out_normals}
        self._verdicts: dict[str, deque[bool]] = {name: deque(maxlen=window) for name in promises}
        self._lock = threading.Lock()

    def add(self, verdicts: Iterable[tuple[str, bool | None]]) -> None:
        """(class name, defective) per scored part; parts without a verdict (no calibration) are skipped."""
        with self._lock:
            for name, defective in verdicts:
                if defective is not None and name in self._verdicts:
                    self._verdicts[name].append(bool(defective))

    def status(self) -> list[dict[str, Any]]:
        """One entry per class: counts over the window, the interval, the promise and a warning (or None)."""
        with self._lock:
            counts = {name: (sum(v), len(v)) for name, v in self._verdicts.items()}
        return [self._entry(name, flagged, scored) for name, (flagged, scored) in counts.items()]

    def _entry(self, name: str, flagged: int, scored: int) -> dict[str, Any]:
        promise = self.promises[name]
        bound = promise.get("false_alarm_bound")
        low, high = binomial_interval(flagged, scored, CONFIDENCE) if scored else (None, None)
        warning = None
        if bound is not None and low is not None and low > bound:
            warning = (f"{name}: {flagged} of the last {scored} parts flagged ({100 * flagged / scored:.3g} %; "
                       f"{CONFIDENCE:.0%} interval {100 * low:.3g}–{100 * high:.3g} %), above the promised "
                       f"{100 * bound:.3g} % for good parts like the {promise.get('held_out_normals')} held-out "
                       "ones: the line's good parts no longer look like them, or defects are frequent. If the "
                       "parts are good, recalibrate on recent good parts.")
        return {
            "class_name": name,
            "window": self.window,
            "scored": scored,
            "flagged": flagged,
            "flagged_share": flagged / scored if scored else None,
            "interval": None if low is None else [low, high],
            "confidence": CONFIDENCE,
            "false_alarm_rate": promise.get("false_alarm_rate"),
            "false_alarm_bound": bound,
            "held_out_normals": promise.get("held_out_normals"),
            "warning": warning,
        }
