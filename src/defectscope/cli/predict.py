"""`defectscope predict CHECKPOINT INPUT...`: score new images, write heatmaps and a score table.

The flags and their checks; the job itself (finding the inputs, scoring, maps, the table, torchrun
shards) is `defectscope.predict.job.run_predict`, which needs no torch with --backend onnxruntime.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.cli.common import add_false_alarm_rate, add_feature_runtime, check_false_alarm_rate
from defectscope.config import ConfigError
from defectscope.data.limits import PREDICT_MAX_IMAGE_PIXELS


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score images or folders of images with a trained model")
    p.add_argument("checkpoint", help="a run's checkpoints/final folder or its model.safetensors "
                                      "(an .onnx file with --backend onnxruntime)")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively; ground-truth "
                                             "masks of the MVTec and MTSD layouts are skipped)")
    p.add_argument("--output", default="predictions", metavar="DIR", help="where scores and maps go")
    p.add_argument("--overwrite", action="store_true",
                   help="reuse a non-empty output folder, removing what predict wrote there before")
    p.add_argument("--class-name", default=None, help="category of the images (needed for multi-class models)")
    p.add_argument("--batch-size", type=int, default=8,
                   help="images per call; this many times --concurrent-calls are held in memory at once")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (torch backend)")
    p.add_argument("--backend", choices=("auto", "torch", "onnxruntime"), default="auto",
                   help="auto (default): onnxruntime for an exported .onnx model, torch for a checkpoint")
    p.add_argument("--threads", type=int, default=None,
                   help="threads one network call may use (default: the available cores shared out among the "
                        "calls at once; with one call, the runtime's default)")
    p.add_argument("--concurrent-calls", type=int, default=None,
                   help="batches read and scored at once, the cores shared out among them unless --threads is "
                        "given (default: 2 for a checkpoint on a CPU with the cores for it, unless OMP_NUM_THREADS "
                        "sets a budget, else 1; the same scores up to float rounding)")
    p.add_argument("--max-image-pixels", type=int, default=PREDICT_MAX_IMAGE_PIXELS,
                   help="larger images (width x height, read from the header) get an error row instead of a score "
                        "(default %(default)d)")
    p.add_argument("--no-maps", action="store_true", help="write scores only")
    add_false_alarm_rate(p)
    add_feature_runtime(p)
    p.set_defaults(run=run)


def _check_options(args: argparse.Namespace, overrides: list[str]) -> None:
    if overrides:
        raise ConfigError(f"predict: unknown arguments {overrides} (the model's settings come from its checkpoint)")
    if args.threads is not None and args.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {args.threads}")
    if args.concurrent_calls is not None and args.concurrent_calls < 1:
        raise ConfigError(f"--concurrent-calls must be at least 1, got {args.concurrent_calls}")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_image_pixels < 1:
        raise ConfigError(f"--max-image-pixels must be at least 1, got {args.max_image_pixels}")
    check_false_alarm_rate(args.false_alarm_rate)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.predict.job import PredictOptions, run_predict

    _check_options(args, overrides)
    return run_predict(PredictOptions(
        model=args.checkpoint, inputs=tuple(args.inputs), output=Path(args.output), overwrite=args.overwrite,
        class_name=args.class_name, batch_size=args.batch_size, device=args.device, backend=args.backend,
        max_image_pixels=args.max_image_pixels, maps=not args.no_maps, false_alarm_rate=args.false_alarm_rate,
        threads=args.threads, concurrent_calls=args.concurrent_calls, feature_runtime=args.feature_runtime,
    ))
