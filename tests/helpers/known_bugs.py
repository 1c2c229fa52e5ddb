"""Failures the fuzz tests found in config.py and engine/checkpoint.py, not fixed yet (the lead's files).

Each entry matches an exception by its type, the innermost defectscope function it escaped from
and whether PyYAML raised it; each has an ``xfail`` test in tests/test_fuzz_config.py or
tests/engine/test_fuzz_checkpoint.py. The fuzz tests record a match as ``known bug: <why>`` and go
on, so they still fail on any failure not listed here. Delete an entry once its xfail test passes.
"""

from __future__ import annotations

import traceback

# (exception type, defectscope function it escapes from, raised inside PyYAML) -> why
CONFIG_BUGS: dict[tuple[type[BaseException], str, bool], str] = {}

CHECKPOINT_BUGS: dict[tuple[type[BaseException], str, bool], str] = {}


def _match(error: BaseException, table: dict[tuple[type[BaseException], str, bool], str]) -> str | None:
    frames = traceback.extract_tb(error.__traceback__)
    ours = [f.name for f in frames if "defectscope" in f.filename]
    where = ours[-1] if ours else "?"
    in_yaml = isinstance(error, RecursionError) or (bool(frames) and "/yaml/" in frames[-1].filename)
    for (kind, place, yaml_raised), why in table.items():
        if isinstance(error, kind) and where == place and in_yaml == yaml_raised:
            return why
    return None


def config_bug(error: BaseException) -> str | None:
    """Why ``error`` is a known config.py bug, or None."""
    return _match(error, CONFIG_BUGS)


def checkpoint_bug(error: BaseException) -> str | None:
    """Why ``error`` is a known checkpoint bug (a stored config hitting a config.py bug counts), or None."""

    found = _match(error, CHECKPOINT_BUGS)
    if found is None and config_bug(error) is not None:
        return f"stored config: {config_bug(error)}"
    return found
