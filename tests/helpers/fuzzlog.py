"""Outcome log for the fuzz tests: one JSON line per example, counted by scripts/fuzz_outcomes.py.

Off unless ``--fuzz-log PATH`` is given (``tests/conftest.py`` sets ``LOG_PATH``); the tests call
:func:`record` after every example, whatever its outcome, so the counts in docs/reliability.md
come from what ran and not from the number of examples asked for.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

LOG_PATH: Path | None = None  # set once per session by tests/conftest.py


def outcome_of(error: BaseException | None, path: object = None) -> str:
    """"success", or the error's type and the gist of its message (path and numbers removed)."""
    if error is None:
        return "success"
    text = str(error).splitlines()[0] if str(error) else ""
    if path is not None:
        text = text.replace(f"{path}: ", "").replace(str(path), "<path>")
    text = text.split(" (", 1)[0]  # details in brackets vary per example
    text = re.sub(r"\d[\d,]*", "N", text)
    return f"{type(error).__name__}: {text}"[:120]


def record(
    loader: str, kind: str, error: BaseException | None, path: object = None, outcome: str = "", detail: str = ""
) -> None:
    """Append one example's outcome to the log (no-op without ``--fuzz-log``); ``detail``: e.g. the format."""
    if LOG_PATH is None:
        return
    line = {"loader": loader, "input": kind, "detail": detail, "outcome": outcome or outcome_of(error, path)}
    with LOG_PATH.open("a") as f:
        f.write(json.dumps(line) + "\n")


class Outcome:
    """``with Outcome(loader, kind, allowed, names=path):`` runs one example and records how it ended.

    An error of an ``allowed`` type ends the example (after checking that its message contains
    ``names``); so does one that ``known`` recognises as a known bug (returning why; it is logged
    as ``known bug: why``). Any other exception, failed assertions included, is logged and re-raised.
    """

    def __init__(
        self,
        loader: str,
        kind: str,
        allowed: tuple[type[BaseException], ...],
        names: object = None,
        known: Callable[[BaseException], str | None] | None = None,
        detail: str = "",
    ) -> None:
        self.loader, self.kind, self.allowed, self.names, self.known = loader, kind, allowed, names, known
        self.detail = detail
        self.error: BaseException | None = None

    def __enter__(self) -> Outcome:
        return self

    def __exit__(self, exc_type: type | None, error: BaseException | None, tb: object) -> bool:
        if error is None:
            record(self.loader, self.kind, None, detail=self.detail)
            return False
        self.error = error
        if isinstance(error, self.allowed):
            record(self.loader, self.kind, error, self.names, detail=self.detail)
            if self.names is not None:
                assert str(self.names) in str(error), f"{type(error).__name__} does not name {self.names}: {error}"
            return True
        why = self.known(error) if self.known is not None and isinstance(error, Exception) else None
        if why is not None:
            record(self.loader, self.kind, None, outcome=f"known bug: {why}", detail=self.detail)
            return True
        record(self.loader, self.kind, error, self.names, detail=self.detail)
        return False
