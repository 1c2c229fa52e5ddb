"""`defectscope VERB ...`: parse → config → engine call, one small module per verb.

Nothing here or in a verb's module imports torch until a verb runs that needs it, so `predict` and
`serve` with an exported .onnx model work on a machine without torch.
"""

from __future__ import annotations

import argparse
import sys

from defectscope.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from defectscope.cli import (
        accept,
        benchmark,
        demo,
        export,
        fit,
        predict,
        report,
        serve,
        test,
        threshold,
        train,
        tune_mosaic,
    )
    from defectscope.version import __version__

    parser = argparse.ArgumentParser(
        prog="defectscope",
        description="Unsupervised visual defect detection: learn normal from good images, find defects.",
        epilog="Any config key can be overridden with --section.key VALUE, e.g. --train.epochs 5.",
    )
    parser.add_argument("--version", action="version", version=f"defectscope {__version__}")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    for module in (fit, threshold, accept, predict, serve, export, train, test, demo, benchmark, report, tune_mosaic):
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, overrides = parser.parse_known_args(argv)
    try:
        return int(args.run(args, overrides) or 0)
    except UserError as err:  # ConfigError, DataError, CheckpointError, ExportError, ReportError, ...
        print(f"defectscope {args.verb}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"defectscope {args.verb}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
