"""`defectscope train CONFIG`: fit a model, then score its test set."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.cli.common import print_results
from defectscope.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a model from a YAML config, then evaluate it")
    p.add_argument("config", help="YAML config, e.g. configs/vq_e/mtsd.yaml")
    p.add_argument("--resume", metavar="CHECKPOINT", help="continue from a run's checkpoints/last")
    p.add_argument("--overwrite", action="store_true", help="replace a finished run in the same output_dir")
    p.add_argument("--no-test", action="store_true", help="skip the evaluation after training")
    p.add_argument("--save-maps", action="store_true", help="save anomaly-map pictures of the test set")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.data import build_datasets
    from defectscope.engine import evaluate, fit, load_checkpoint, make_fabric

    cfg = load_config(args.config, overrides)
    fabric = make_fabric(cfg)
    result = fit(cfg, resume=args.resume, fabric=fabric, overwrite=args.overwrite)
    if args.no_test or not fabric.is_global_zero:
        return 0
    ckpt = load_checkpoint(result.checkpoint)
    bundle = build_datasets(cfg.data)
    out = Path(cfg.output_dir)
    results = evaluate(
        ckpt.model, bundle.test, ckpt.class_names, cfg, fabric.device, out, checkpoint=result.checkpoint,
        calibration=ckpt.calibration, save_maps=args.save_maps or None, standardizer=ckpt.standardizer,
    )
    results["train_seconds"] = round(result.seconds, 1)
    print_results(results, out)
    return 0
