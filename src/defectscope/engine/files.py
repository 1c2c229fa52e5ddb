"""Writing result files so a reader never sees half of one."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_text_atomic(path: Path, text: str) -> None:
    """Write beside the target, then rename over it: an interruption leaves the old file whole."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def json_default(value: Any) -> Any:
    """`json.dumps(default=...)` for numpy and torch scalars."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value)}")
