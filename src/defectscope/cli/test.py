"""`defectscope test CHECKPOINT`: score a test set with a trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.cli.common import print_results, with_save_maps
from defectscope.config import ConfigError, build_config, config_to_raw, merge, parse_overrides, read_yaml


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("test", help="evaluate a checkpoint on its (or another) test set")
    p.add_argument("checkpoint", help="a run's checkpoints/final folder or its model.safetensors")
    p.add_argument("--data", metavar="CONFIG", help="take the data: section from this YAML instead")
    p.add_argument("--output", metavar="DIR", help="where results go (default: RUN/test)")
    p.add_argument("--save-maps", action="store_true", help="save anomaly-map pictures")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine import load_checkpoint
    from defectscope.engine import run as run_engine
    from defectscope.engine.environment import pick_device

    ckpt = load_checkpoint(args.checkpoint)
    raw = config_to_raw(ckpt.config)
    if args.data:
        data = read_yaml(args.data).get("data", {})
        if not isinstance(data, dict):
            raise ConfigError(f"{args.data}: 'data' must be a mapping, got {type(data).__name__}")
        raw["data"] = merge(raw["data"], data)
    if overrides:
        raw = merge(raw, parse_overrides(overrides))
    cfg = with_save_maps(build_config(raw, f"{ckpt.path}/config + command line"), args.save_maps)
    out = Path(args.output) if args.output else Path(ckpt.path).parent.parent / "test"
    result = run_engine(cfg, weights=ckpt, output_dir=out, device=pick_device(args.device))
    missing = [n for n in result.class_names if n not in ckpt.class_names]
    if missing and len(ckpt.class_names) > 1:
        print(f"note: categories not seen in training: {', '.join(missing)}")
    print_results(result.results, out)
    return 0
