"""`defectscope serve CHECKPOINT`: an HTTP service and a web page that score uploaded images.

A .onnx model is served by onnxruntime without importing torch; only a checkpoint needs it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from defectscope.cli.common import add_false_alarm_rate, add_feature_runtime, check_false_alarm_rate
from defectscope.config import ConfigError

MIB = 1024 * 1024


def add_parser(sub: argparse._SubParsersAction) -> None:
    from defectscope.serve.settings import ServeSettings

    d = ServeSettings()
    p = sub.add_parser("serve", help="HTTP service + web page scoring uploaded images (needs the 'serve' extra)")
    p.add_argument("checkpoint", help="a run's checkpoints/final folder, its model.safetensors, or a .onnx file "
                                      "from defectscope export (scored by onnxruntime)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on; 0.0.0.0 opens it to the network")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--threads", type=int, default=None,
                   help="threads one network call may use (default: torch's default, or onnxruntime with one per "
                        "available core)")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / MIB,
                   help="largest image file, MiB; enforced while the upload streams in (default %(default)g)")
    p.add_argument("--max-batch-mb", type=float, default=d.max_batch_bytes / MIB,
                   help="largest /predict/batch body, MiB (default %(default)g)")
    p.add_argument("--max-batch-files", type=int, default=d.max_batch_files, help="(default %(default)d)")
    p.add_argument("--max-image-pixels", type=int, default=d.max_image_pixels,
                   help="decoded-pixel cap, read from the header before decoding (default %(default)d = 4096²)")
    add_false_alarm_rate(p)
    add_feature_runtime(p)
    p.add_argument("--max-inflight-images", type=int, default=d.max_inflight_images,
                   help="images decoded and scored at once over all requests, taken first come, first served "
                        "(default %(default)d)")
    p.add_argument("--concurrent-calls", type=int, default=d.concurrent_calls,
                   help="score calls that run at once, each on the requests waiting when it starts; without "
                        "--threads the available cores are shared out among them (default %(default)d)")
    p.add_argument("--drift-window", type=int, default=d.drift_window,
                   help="/health and the page compare the flagged share of the last this-many scored parts "
                        "(per class) with the promised false-alarm bound (default %(default)d)")
    p.add_argument("--allow-feedback", metavar="DIR", default=None,
                   help="let the page's 'mark as good' button (POST /feedback) take a flagged part into the model "
                        "(PatchCore, PaDiM, mean image; a checkpoint, not .onnx). Parts are kept in DIR/<class>/ "
                        "and taken in again on restart; the checkpoint on disk is not changed (defectscope accept "
                        "does that). Off by default: whoever reaches the service could teach it a defect")
    p.add_argument("--max-feedback", type=int, default=1000,
                   help="most parts DIR may hold; more are refused (409) (default %(default)d)")
    p.add_argument("--no-heap-trim", dest="heap_trim", action="store_false",
                   help="do not hand freed heap back to the system after a burst (glibc malloc_trim)")
    p.add_argument("--heap-arenas", type=int, default=2,
                   help="glibc heaps shared by all threads; more use more memory after a burst, not more speed "
                        "(0: glibc's default, eight per core; MALLOC_ARENA_MAX in the environment wins) "
                        "(default %(default)d)")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"],
                   help="uvicorn's; 'warning' drops the per-request access log")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.serve.settings import ServeSettings

    if overrides:
        raise ConfigError(f"serve: unknown arguments {overrides} (it takes a checkpoint and the flags in --help)")
    check_false_alarm_rate(args.false_alarm_rate)
    for flag in ("max_upload_mb", "max_batch_mb", "max_batch_files", "max_image_pixels", "max_inflight_images",
                 "concurrent_calls", "drift_window", "max_feedback", "threads"):
        if flag == "threads" and args.threads is None:
            continue
        if not getattr(args, flag) > 0:
            raise ConfigError(f"--{flag.replace('_', '-')} must be positive, got {getattr(args, flag)}")
    if args.heap_arenas < 0:
        raise ConfigError(f"--heap-arenas must be 0 (glibc's default) or positive, got {args.heap_arenas}")
    from defectscope.serve.slots import limit_heap_arenas

    limit_heap_arenas(args.heap_arenas)  # before the server's threads take heaps of their own
    settings = ServeSettings(
        max_upload_bytes=max(1, round(args.max_upload_mb * MIB)),
        max_batch_bytes=max(1, round(args.max_batch_mb * MIB)),
        max_batch_files=args.max_batch_files, max_image_pixels=args.max_image_pixels,
        max_inflight_images=args.max_inflight_images, concurrent_calls=args.concurrent_calls,
        drift_window=args.drift_window,
    )
    try:
        import uvicorn

        from defectscope.serve.app import create_app
    except ImportError as err:
        print(f"defectscope serve: error: {err.name} is not installed; pip install 'defectscope[serve]'",
              file=sys.stderr)
        return 2
    exported = args.checkpoint.lower().endswith(".onnx")
    from defectscope.export.runtime import threads_per_call

    threads = threads_per_call(args.threads, args.concurrent_calls)
    if args.allow_feedback is not None and exported:
        raise ConfigError(f"--allow-feedback: {args.checkpoint} is an exported model, fixed once written; serve the "
                          "run's checkpoint folder to take parts in, then export again")
    if exported and args.feature_runtime == "torch":
        raise ConfigError(f"--feature-runtime torch: {args.checkpoint} runs wholly in onnxruntime (an exported "
                          "model); serve the run's checkpoint to compute its features in torch")
    if exported:
        from defectscope.export.metadata import ExportError as ModelError
        from defectscope.export.runtime import OnnxDetector

        detector = OnnxDetector(args.checkpoint, device=args.device, threads=threads)  # ExportError names it
    else:
        from defectscope.engine.checkpoint import CheckpointError as ModelError
        from defectscope.engine.detector import Detector, FeatureRuntimeError
        from defectscope.engine.environment import pick_device

        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        try:
            detector = Detector.from_checkpoint(args.checkpoint, device=str(pick_device(args.device)),
                                                feature_runtime=args.feature_runtime)
        except FeatureRuntimeError as err:  # onnxruntime asked for where it cannot run
            raise ConfigError(f"--feature-runtime: {err}") from err
    if detector.threshold is None:
        raise ModelError(f"{args.checkpoint}: no calibrated image_threshold (the run had no held-out normal "
                         "images), so the service could not tell OK from DEFECT")
    if args.false_alarm_rate is not None:
        detector.set_false_alarm_rate(args.false_alarm_rate)
    feedback = _feedback(detector, args, settings) if args.allow_feedback is not None else None
    app = create_app(detector, settings, trim_heap=args.heap_trim, feedback=feedback)
    info = detector.info()
    print(f"defectscope serve: {info['model_name']} from {args.checkpoint} in {info['backend']} ({info['threads']} "
          f"threads, {info['device']}, features in {info['feature_runtime']}, {settings.concurrent_calls} score "
          f"call(s) at once); page http://{args.host}:{args.port}/  "
          f"OpenAPI http://{args.host}:{args.port}/openapi.json", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _feedback(detector: Any, args: argparse.Namespace, settings: Any) -> Any:
    """The feedback folder, with the parts an earlier session kept taken in again before the first request."""
    from defectscope.serve.feedback import Feedback, FeedbackError
    from defectscope.serve.images import decode_upload
    from defectscope.serve.upload import UploadError

    if not detector.can_absorb:
        raise ConfigError(f"--allow-feedback: {args.checkpoint}: {detector.cannot_absorb}")
    feedback = Feedback(detector, Path(args.allow_feedback), args.max_feedback)
    try:
        kept = feedback.restore(lambda data, name: decode_upload(data, name, settings.max_image_pixels))
    except (FeedbackError, UploadError) as err:
        raise ConfigError(getattr(err, "message", str(err))) from err
    if kept:
        print(f"defectscope serve: took in {kept} part(s) marked good earlier, from {args.allow_feedback}",
              file=sys.stderr, flush=True)
    return feedback
