"""Count the outcomes a fuzz run logged (``pytest -m fuzz --fuzz --fuzz-log LOG``) as Markdown tables.

Usage: ``python scripts/fuzz_outcomes.py LOG [--top 8] [--detail]``. Per loader: examples run, successes,
documented errors (DataError / ConfigError / CheckpointError), known bugs and anything else; then
per loader and input kind; then the most frequent messages. Every example the tests executed is
counted, including hypothesis's shrinking and replay runs.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

DOCUMENTED = ("DataError", "ConfigError", "CheckpointError")


def category(outcome: str) -> str:
    if outcome == "success":
        return "success"
    if outcome.startswith("known bug"):
        return "known bug"
    if outcome.split(":", 1)[0] in DOCUMENTED:
        return "documented error"
    return "anything else"


COLUMNS = ["success", "documented error", "known bug", "anything else"]


def family(outcome: str) -> str:
    """The message with quoted values and format names generalised, so one kind of error is one line."""
    outcome = re.sub(r"'[^']*'", "'…'", outcome)
    return re.sub(r"\b(PNG|JPEG|MPO|BMP|DIB|TIFF)\b", "FMT", outcome)


def table(rows: dict[str, Counter[str]], first: str) -> list[str]:
    lines = [f"| {first} | examples | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for name, counts in rows.items():
        total = sum(counts.values())
        lines.append(f"| {name} | {total:,} | " + " | ".join(f"{counts[c]:,}" for c in COLUMNS) + " |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log", type=Path)
    parser.add_argument("--top", type=int, default=8, help="messages listed per loader")
    parser.add_argument("--detail", action="store_true", help="split inputs by their detail (format, mode, size)")
    args = parser.parse_args()
    by_loader: dict[str, Counter[str]] = defaultdict(Counter)
    by_input: dict[str, Counter[str]] = defaultdict(Counter)
    messages: dict[str, Counter[str]] = defaultdict(Counter)
    for line in args.log.read_text().splitlines():
        entry = json.loads(line)
        kind = category(entry["outcome"])
        by_loader[entry["loader"]][kind] += 1
        detail = f" ({entry['detail']})" if args.detail and entry.get("detail") else ""
        by_input[f"{entry['loader']} / {entry['input']}{detail}"][kind] += 1
        if kind != "success":
            messages[entry["loader"]][family(entry["outcome"])] += 1
    print("\n".join(table(dict(sorted(by_loader.items())), "loader")))
    print()
    print("\n".join(table(dict(sorted(by_input.items())), "loader / input")))
    for loader, counts in sorted(messages.items()):
        print(f"\n{loader}: most frequent errors ({len(counts)} kinds)\n")
        for outcome, n in counts.most_common(args.top):
            print(f"- {n:,} × `{outcome}`")


if __name__ == "__main__":
    main()
