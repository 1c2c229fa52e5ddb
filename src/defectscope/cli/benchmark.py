"""`defectscope benchmark SUITE.yaml`: run every cell of a suite, resumably, and table the results."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.config import parse_overrides


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "benchmark", help="run a suite of models x datasets x settings x seeds (resumable), then table the results",
        description="Cells already finished in the output folder are skipped; an interrupted cell is redone. "
        "Any --section.key VALUE is applied to every cell (e.g. --train.max_minutes 1).",
    )
    p.add_argument("suite", help="suite YAML, e.g. benchmarks/mtsd.yaml")
    p.add_argument("--output", metavar="DIR", help="output folder (default: runs/benchmarks/<suite name>)")
    p.add_argument("--only", action="append", metavar="GLOB",
                   help="run only cells whose id matches, e.g. 'vq_e.*' (repeatable); ids: see --dry-run")
    p.add_argument("--dry-run", action="store_true", help="list the cells and what would run, run nothing")
    p.add_argument("--keep-going", action="store_true", help="record a failed cell and go on with the next")
    p.add_argument("--redo", action="store_true", help="run selected cells again even when finished")
    p.add_argument("--report", action="store_true", help="also write OUTPUT/report.html")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.benchmark import load_suite, run_suite

    suite = load_suite(args.suite, parse_overrides(overrides) if overrides else None)
    output = Path(args.output) if args.output else Path("runs") / "benchmarks" / suite.name
    result = run_suite(suite, output, only=args.only, dry_run=args.dry_run, keep_going=args.keep_going,
                       redo=args.redo)
    if args.dry_run:
        total = len(result.skipped) + len(result.pending)
        print(f"{len(result.pending)} of {total} selected cells would run into {output} "
              f"({len(result.skipped)} finished)")
        return 0
    for cell_id in result.stale:
        print(f"note: {cell_id} finished with a config that differs from the suite's now; "
              f"rerun it with --only {cell_id} --redo")
    print(f"ran {len(result.ran)}, skipped {len(result.skipped)} finished, failed {len(result.failed)}; "
          f"{len(result.results['cells'])} of {result.results['cells_total']} cells finished")
    print(f"results: {output / 'results.json'}  table: {output / 'results.md'}")
    if args.report:
        from defectscope.report.build import build_report

        print(f"report: {build_report(output)}")
    return 1 if result.failed else 0
