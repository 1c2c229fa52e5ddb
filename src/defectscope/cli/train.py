"""`defectscope train CONFIG`: fit a model, then score its test set."""

from __future__ import annotations

import argparse

from defectscope.cli.common import print_results, with_save_maps
from defectscope.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config, then evaluate it")
    p.add_argument("config", help="YAML config, e.g. configs/vq_e/mtsd.yaml")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a run's checkpoints/last")
    p.add_argument("--overwrite", action="store_true",
                   help="delete what an earlier run wrote into the same output_dir and start again")
    p.add_argument("--no-test", action="store_true", help="skip the evaluation after training")
    p.add_argument("--save-maps", action="store_true", help="save anomaly-map pictures of the test set")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine import load_checkpoint
    from defectscope.engine import run as run_engine

    cfg = with_save_maps(load_config(args.config, overrides), args.save_maps)
    resume = load_checkpoint(args.resume) if args.resume else None
    result = run_engine(cfg, resume=resume, overwrite=args.overwrite, evaluate_test=not args.no_test)
    if result.results is not None:
        print_results(result.results, result.run_dir)
    return 0
