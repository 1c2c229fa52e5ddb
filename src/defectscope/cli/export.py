"""`defectscope export CHECKPOINT --format onnx`: the whole scoring path as one file a runtime without torch reads."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
from pathlib import Path

from defectscope.cli.common import add_false_alarm_rate, check_false_alarm_rate
from defectscope.config import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a checkpoint as an ONNX graph with its thresholds (the 'export' extra)")
    p.add_argument("checkpoint", help="a run's checkpoints/final folder or its model.safetensors")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="(default %(default)s)")
    p.add_argument("--output", "-o", default=None, metavar="FILE",
                   help="where the graph goes (default: the checkpoint folder's path + .onnx)")
    p.add_argument("--opset", type=int, default=None,
                   help="ONNX opset (default: the exporter's own, 20 for dynamo; dynamo writes 18 or newer)")
    p.add_argument("--exporter", default="dynamo", choices=["dynamo", "torchscript"],
                   help="torch.onnx.export's path: dynamo (torch.export + onnxscript, default) or the older "
                        "TorchScript one")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_false_alarm_rate(p)
    p.add_argument("--no-check", action="store_true",
                   help="skip running the graph in onnxruntime against torch after writing it")
    p.set_defaults(run=run)


def default_output(checkpoint: str) -> Path:
    """runs/x/checkpoints/final (or its model.safetensors) → runs/x/checkpoints/final.onnx."""
    path = Path(checkpoint)
    folder = path.parent if path.suffix == ".safetensors" else path
    return folder.with_name(folder.name + ".onnx")


def check_writable(output: Path) -> None:
    """The graph's folder exists (or is made) and takes a file: checked before the checkpoint is read."""
    if output.is_dir():
        raise ConfigError(f"--output {output}: is a folder; name the .onnx file to write")
    folder = output.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        at = f" at {err.filename}" if err.filename and Path(err.filename) != folder else ""
        raise ConfigError(f"--output {output}: cannot create the folder {folder} ({err.strerror or err}{at})") from None
    try:
        handle, probe = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".write-test", dir=folder)
        os.close(handle)
        os.unlink(probe)
    except OSError as err:
        raise ConfigError(f"--output {output}: cannot write into the folder {folder} ({err.strerror or err})") from None


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    if overrides:
        raise ConfigError(f"export: unknown arguments {overrides} (it takes a checkpoint and the flags in --help)")
    check_false_alarm_rate(args.false_alarm_rate)
    output = Path(args.output) if args.output else default_output(args.checkpoint)
    check_writable(output)
    if output.exists() and not args.overwrite:
        raise ConfigError(f"{output} exists; pass --overwrite to replace it, or --output another file")
    try:
        import onnx  # noqa: F401 - checked here so a missing extra is one clear line
        import onnxscript  # noqa: F401
    except ImportError as err:
        print(f"defectscope export: error: {err.name} is not installed; pip install 'defectscope[export]'",
              file=sys.stderr)
        return 2

    from defectscope.engine import load_checkpoint
    from defectscope.export.metadata import ExportError
    from defectscope.export.onnx_graph import compare_with_torch, export_onnx

    checkpoint = load_checkpoint(args.checkpoint)
    if args.false_alarm_rate is not None:
        if checkpoint.calibration is None:
            raise ConfigError(f"--false-alarm-rate: {args.checkpoint} has no calibration to set again")
        checkpoint = dataclasses.replace(checkpoint, calibration=checkpoint.calibration.at_rate(args.false_alarm_rate))
    try:
        info = export_onnx(checkpoint, output, opset=args.opset, exporter=args.exporter)
        inputs = "images" + (", class_ids" if info.multi_class else "")
        print(f"{output}: {info.model_name}, {output.stat().st_size / 2**20:.1f} MiB, opset {info.opset} "
              f"({info.exporter} exporter); inputs {inputs} at {info.image_size} px, dynamic batch")
        if not args.no_check:
            diff = compare_with_torch(checkpoint, output)
            print(f"onnxruntime vs torch on random images (batch 1 and 3): max |map diff| {diff['max_map_diff']:.2e} "
                  f"(maps reach {diff['max_abs_map']:.3g}), max |score diff| {diff['max_score_diff']:.2e}")
    except ExportError as err:
        print(f"defectscope export: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # the disk filled, or the folder changed, after check_writable
        print(f"defectscope export: error: --output {output}: cannot write it ({err.strerror or err})",
              file=sys.stderr)
        return 2
    return 0
