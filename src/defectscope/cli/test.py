"""`defectscope test CHECKPOINT`: score a test set with a trained model."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from defectscope.cli.common import pick_device, print_results
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
    from defectscope.data import build_datasets
    from defectscope.engine import evaluate, load_checkpoint
    from defectscope.engine.checkpoint import load_weights
    from defectscope.engine.evaluate import calibrate
    from defectscope.models import create_model

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
    model, calibration, standardizer = ckpt.model, ckpt.calibration, ckpt.standardizer
    device = pick_device(args.device)
    if cfg.model != ckpt.config.model or cfg.eval.map_standardization != ckpt.config.eval.map_standardization:
        # scoring settings (e.g. --model.score, --eval.map_standardization) apply to the trained
        # weights; thresholds and standardiser are fitted again on the held-out normal images
        model = create_model(cfg.model_name, cfg.model, cfg.data.image_size, max(1, len(ckpt.class_names)))
        try:
            load_weights(model, ckpt.model.state_dict())
        except ValueError as err:
            raise ConfigError(f"{ckpt.path}: the overrides change the network, not only its scoring ({err})") from err
        calibration, standardizer = calibrate(model, bundle.validation, cfg, device, max(1, len(ckpt.class_names)))
    missing = [n for n in bundle.class_names if n not in ckpt.class_names]
    class_names = bundle.class_names
    if missing and len(ckpt.class_names) > 1:
        print(f"note: categories not seen in training: {', '.join(missing)}")
    out = Path(args.output) if args.output else Path(ckpt.path).parent.parent / "test"
    results = evaluate(
        model, bundle.test, class_names, cfg, device, out, checkpoint=ckpt.path,
        calibration=calibration, save_maps=args.save_maps or None, standardizer=standardizer,
    )
    print_results(results, out)
    return 0
