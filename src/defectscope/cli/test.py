"""`defectscope test CHECKPOINT`: score a test set with a trained model."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from defectscope.cli.common import pick_device, print_results
from defectscope.config import build_config, config_to_raw, merge, parse_overrides, read_yaml


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on its (or another) test set")
    p.add_argument("checkpoint", help="a run's checkpoints/final folder or its model.safetensors")
    p.add_argument("--data", metavar="CONFIG", help="take the data: section from this YAML instead")
    p.add_argument("--output", metavar="DIR", help="where results go (default: the run folder)")
    p.add_argument("--save-maps", action="store_true", help="save anomaly-map pictures")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.data import build_datasets
    from defectscope.engine import evaluate, load_checkpoint

    ckpt = load_checkpoint(args.checkpoint)
    cfg = ckpt.config
    raw = config_to_raw(cfg)
    if args.data:
        raw["data"] = merge(raw["data"], read_yaml(args.data).get("data", {}))
    if overrides:
        raw = merge(raw, parse_overrides(overrides))
    cfg = build_config(raw, f"{ckpt.path}/config + command line")
    if cfg.data.image_size != ckpt.config.data.image_size:
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_size=ckpt.config.data.image_size))
    bundle = build_datasets(cfg.data)
    missing = [n for n in bundle.class_names if n not in ckpt.class_names]
    class_names = bundle.class_names
    if missing and len(ckpt.class_names) > 1:
        print(f"note: categories not seen in training: {', '.join(missing)}")
    out = Path(args.output) if args.output else Path(ckpt.path).parent.parent
    results = evaluate(
        ckpt.model, bundle.test, class_names, cfg, pick_device(args.device), out, checkpoint=ckpt.path,
        calibration=ckpt.calibration, save_maps=args.save_maps or None,
    )
    print_results(results, out)
    return 0
