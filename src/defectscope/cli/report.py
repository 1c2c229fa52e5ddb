"""`defectscope report DIR`: one self-contained HTML report of a run, a benchmark or a predict folder."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.config import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="write one self-contained HTML report of a run, benchmark or predict folder")
    p.add_argument("run_dir", metavar="DIR", help="a run folder (with results.json), a benchmark output folder, or "
                                                  "a `defectscope predict` output folder (with scores.json)")
    p.add_argument("--output", metavar="FILE", help="where the HTML goes (default: DIR/report.html)")
    p.add_argument("--max-images", type=int, default=None, metavar="N",
                   help="predict folders: at most N pictures in the page, flagged parts first; the rest are listed "
                        "without pictures (default 100)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.report.predictions import MAX_IMAGES, build_predict_report, is_predict_folder

    if overrides:
        raise ConfigError(f"report takes no config overrides, got {' '.join(overrides)}")
    if args.max_images is not None and args.max_images < 0:
        raise ConfigError(f"--max-images must be at least 0, got {args.max_images}")
    directory = Path(args.run_dir)
    if is_predict_folder(directory):  # no torch, no matplotlib: the page of a torch-free predict run
        path = build_predict_report(directory, args.output, MAX_IMAGES if args.max_images is None else args.max_images)
    else:
        if args.max_images is not None:
            raise ConfigError(f"--max-images applies to a predict folder (with scores.json); {directory} is not one")
        from defectscope.report.build import build_report

        path = build_report(directory, args.output)
    print(f"report: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0
