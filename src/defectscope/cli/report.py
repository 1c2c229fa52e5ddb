"""`defectscope report RUN_DIR`: one self-contained HTML report of a run or a benchmark."""

from __future__ import annotations

import argparse

from defectscope.config import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report of a run or benchmark folder")
    p.add_argument("run_dir", help="a run folder (with results.json) or a benchmark output folder")
    p.add_argument("--output", metavar="FILE", help="where the HTML goes (default: RUN_DIR/report.html)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.report.build import build_report

    if overrides:
        raise ConfigError(f"report takes no config overrides, got {' '.join(overrides)}")
    print(f"report: {build_report(args.run_dir, args.output)}")
    return 0
