"""`run_predict`: find the inputs, score them a batch at a time, write maps and the score table.

Images are streamed a batch at a time: memory does not grow with the number of inputs (at most
`concurrent_calls` batches are held at once), and the rows are written in input order as each
batch is done. A checkpoint on a CPU reads and scores two batches side by side, each on half the
cores: one batch's decoding and Python overlap the other's network, 34–55 % more images a second
for PatchCore with the same scores (docs/results/speed.md). An image that cannot be read
becomes a row with its reason instead of stopping the run, and so does an entry named like an
image that is not a regular file (a FIFO, a link to a device, a link loop, a folder): it is never
opened, so a FIFO cannot hang the run. Under torchrun each rank scores every
N-th input and rank 0 merges the rows in input order.
"""

from __future__ import annotations

import csv
import os
import sys
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from defectscope.config import ConfigError
from defectscope.data.discovery import GROUND_TRUTH_RULES, InputImage, find_inputs, not_a_file
from defectscope.data.errors import DataError
from defectscope.data.limits import PREDICT_MAX_IMAGE_PIXELS
from defectscope.detection import DetectorLike
from defectscope.predict.output import (
    COLUMNS,
    MAPS_DIR,
    SCORES_CSV,
    SCORES_JSON,
    check_map_names,
    check_output,
    map_picture,
    merge_parts,
    part_path,
    prepare_output,
    skipped_fields,
    write_json,
)
from defectscope.predict.shard import Shard, start_shard
from defectscope.scoring.detection import FeatureRuntime


@dataclass(frozen=True)
class PredictOptions:
    """One predict run, as the verb's flags give it."""

    model: str  # a checkpoint folder or its model.safetensors (torch), or an exported .onnx (onnxruntime)
    inputs: tuple[str, ...]  # image files and/or folders
    output: Path
    overwrite: bool = False  # reuse a non-empty output folder, removing what predict wrote there before
    class_name: str | None = None  # needed for multi-class models
    batch_size: int = 8  # images per call; memory holds up to batch_size x concurrent_calls decoded images
    device: str = "auto"  # torch backend: auto, cpu or cuda
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"  # auto: onnxruntime for a .onnx file, else torch
    threads: int | None = None  # threads per call; None: the cores shared out among the calls (one call: the runtime's)
    concurrent_calls: int | None = None  # batches scored at once; None: plan_calls decides
    max_image_pixels: int = PREDICT_MAX_IMAGE_PIXELS  # larger images get an error row
    maps: bool = True  # write map pictures
    false_alarm_rate: float | None = None  # thresholds for this stated rate instead of the calibrated one
    feature_runtime: FeatureRuntime = "auto"  # a checkpoint's backbone features: onnxruntime where installed


def plan_calls(options: PredictOptions, side_by_side: bool, batches: int) -> tuple[int, int | None]:
    """(batches scored at once, threads per call; None: the runtime's default), for `batches` batches.

    Not asked: two where they gain (`side_by_side`: a checkpoint on a CPU, one process) and each
    call keeps at least `--threads` cores (one without the flag); else one. An exported model is
    one onnxruntime graph that already keeps the cores busy: two PatchCore graphs at once scored
    MTSD slower and held half as much memory again (docs/results/speed.md). OMP_NUM_THREADS in the
    environment without --threads is the user's thread budget: one call then, as before. Never
    more calls than batches: a lone batch keeps every core."""
    from defectscope.export.runtime import available_cores, threads_per_call

    calls = options.concurrent_calls
    if calls is None:
        budget = options.threads is None and "OMP_NUM_THREADS" in os.environ
        calls = max(1, min(2, available_cores() // (options.threads or 1))) if side_by_side and not budget else 1
    calls = max(1, min(calls, batches))
    return calls, threads_per_call(options.threads, calls)


def load_detector(options: PredictOptions, shard: Shard, stack: ExitStack, batches: int) -> tuple[DetectorLike, int]:
    """The detector that scores (the checkpoint in torch, or an exported model in onnxruntime, no
    torch) and how many of this rank's `batches` it scores at once; torch's thread count is put back
    when `stack` closes."""
    if backend_of(options) == "onnxruntime":
        if options.feature_runtime == "torch":
            raise ConfigError(f"--feature-runtime torch: {options.model} runs wholly in onnxruntime (an exported "
                              "model); score the run's checkpoint to compute its features in torch")
        try:
            from defectscope.export.runtime import OnnxDetector
        except ModuleNotFoundError as err:
            raise ConfigError(f"--backend onnxruntime: install defectscope[export] / export module missing "
                              f"({err.name} not found)") from err
        calls, threads = plan_calls(options, side_by_side=False, batches=batches)
        onnx = OnnxDetector(options.model, batch_size=options.batch_size, threads=threads)
        return _at_rate(onnx, options), calls  # ExportError names it
    import torch

    from defectscope.engine.detector import Detector, FeatureRuntimeError
    from defectscope.engine.environment import pick_device

    device = pick_device(options.device)
    if device.type == "cuda" and shard.distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    # under torchrun each rank is a process of its own already
    calls, threads = plan_calls(options, side_by_side=device.type == "cpu" and not shard.distributed,
                                batches=batches)
    if threads is not None:
        stack.callback(torch.set_num_threads, torch.get_num_threads())  # the caller's process keeps its own
        torch.set_num_threads(threads)
    try:
        detector = Detector.from_checkpoint(options.model, device=str(device), batch_size=options.batch_size,
                                            feature_runtime=options.feature_runtime)
    except FeatureRuntimeError as err:  # onnxruntime asked for where it cannot run
        raise ConfigError(f"--feature-runtime: {err}") from err
    return _at_rate(detector, options), calls


def backend_of(options: PredictOptions) -> Literal["torch", "onnxruntime"]:
    """`auto`: an exported model runs in onnxruntime (no torch), a checkpoint in torch."""
    if options.backend != "auto":
        return options.backend
    return "onnxruntime" if str(options.model).lower().endswith(".onnx") else "torch"


def _at_rate(detector: DetectorLike, options: PredictOptions) -> DetectorLike:
    if options.false_alarm_rate is not None:
        try:
            detector.set_false_alarm_rate(options.false_alarm_rate)  # type: ignore[attr-defined]
        except ValueError as err:
            raise ConfigError(f"--false-alarm-rate: {options.model}: {err}") from err
    return detector


def check_class_name(detector: DetectorLike, wanted: str | None) -> str | None:
    names = list(detector.class_names)
    if wanted is None and len(names) > 1:
        raise ConfigError(f"this model knows {len(names)} classes ({', '.join(names)}); name the images' "
                          "class with --class-name")
    if wanted is not None and wanted not in names:
        raise ConfigError(f"--class-name {wanted!r} is not one of {names}")
    return wanted


def read_image(path: Path, max_pixels: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] by load_image's rules; the pixel count is read from the header first.

    Anything but a regular file is refused before it is opened (opening a FIFO waits for a writer)."""
    from defectscope.data.image_io import image_size, load_image_array

    reason = not_a_file(path)
    if reason is not None:
        raise DataError(reason)
    width, height = image_size(path)
    if width * height > max_pixels:
        raise DataError(f"{width}x{height} = {width * height / 1e6:.1f} Mpx is over the cap of "
                        f"{max_pixels / 1e6:.1f} Mpx (--max-image-pixels {max_pixels})")
    return load_image_array(path, max_pixels)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.9g}"


def _batches(items: list[tuple[int, InputImage]], size: int) -> Iterator[list[tuple[int, InputImage]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_shard(detector: DetectorLike, images: list[InputImage], maps: list[Path | None], shard: Shard,
                options: PredictOptions, class_name: str | None, calls: int = 1) -> Path:
    """Score this rank's inputs, up to `calls` batches at once; rows are written in input order, each
    batch's as soon as it and the batches before it are done, its maps before its rows.

    `maps` holds each input's map path under maps/ (`check_map_names`)."""
    from tqdm import tqdm

    out = options.output
    mine = [(i, image) for i, image in enumerate(images) if shard.owns(i)]
    high = detector.info().get("pixel_threshold")
    promises = {name: detector.promise(name) for name in detector.class_names}  # type: ignore[attr-defined]
    part = part_path(out, shard.rank)

    def score_batch(batch: list[tuple[int, InputImage]]) -> list[list[str]]:
        from PIL import Image

        arrays: list[np.ndarray] = []
        read: list[tuple[int, InputImage]] = []
        rows: dict[int, list[str]] = {}
        for index, image in batch:
            try:
                if image.error is not None:
                    raise DataError(image.error)
                arrays.append(read_image(image.path, options.max_image_pixels))
                read.append((index, image))
            except (DataError, OSError) as err:
                rows[index] = [str(index), str(image.path), *[""] * (len(COLUMNS) - 2), str(err)]
        detections = detector.score(arrays, class_name) if arrays else []
        for (index, image), array, det in zip(read, arrays, detections, strict=True):
            target = ""
            name = maps[index]
            if options.maps and name is not None:
                target = name.as_posix()
                file = out / MAPS_DIR / target
                file.parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(map_picture(array, det.anomaly_map, high)).save(file, compress_level=1)
            verdict = "" if det.defective is None else ("DEFECT" if det.defective else "OK")
            bound = promises[det.class_name].get("false_alarm_bound")
            rows[index] = [str(index), str(image.path), target, det.class_name, _fmt(det.score),
                           _fmt(det.normalized_score), verdict, _fmt(det.threshold), _fmt(bound),
                           _fmt(det.defect_area), ""]
        return [rows[index] for index, _ in batch]

    bar = tqdm(total=len(mine), unit="img", desc="predict", disable=None if shard.rank == 0 else True,
               file=sys.stderr)
    with part.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("index", *COLUMNS))
        f.flush()

        def write(rows: list[list[str]]) -> None:
            writer.writerows(rows)
            f.flush()
            bar.update(len(rows))

        if calls == 1:  # in this thread: Ctrl-C stops a read or a call where it is
            for batch in _batches(mine, options.batch_size):
                write(score_batch(batch))
        else:
            _score_side_by_side(score_batch, _batches(mine, options.batch_size), calls, write)
    bar.close()
    return part


def _score_side_by_side(score_batch: Callable[[list[tuple[int, InputImage]]], list[list[str]]],
                        batches: Iterator[list[tuple[int, InputImage]]], calls: int,
                        write: Callable[[list[list[str]]], None]) -> None:
    """`calls` batches at once in worker threads, written in order, at most `calls` in memory.

    A failure or Ctrl-C stops it at once: batches not started are dropped and the ones running are
    not waited for (their threads finish them in the background, then the process exits)."""
    pool = ThreadPoolExecutor(calls, thread_name_prefix="predict")
    running: deque[Future[list[list[str]]]] = deque()
    try:
        for batch in batches:
            if len(running) == calls:
                write(running.popleft().result())  # a batch's failure stops the run here
            running.append(pool.submit(score_batch, batch))
        while running:
            write(running.popleft().result())
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()


def run_predict(options: PredictOptions) -> int:
    """The whole run; returns the exit status: 0, or 1 when some image could not be scored (its row says why)."""
    with ExitStack() as stack:
        return _run_predict(options, stack)


def _run_predict(options: PredictOptions, stack: ExitStack) -> int:
    out = options.output
    found = find_inputs(options.inputs, exclude=out)
    images, skipped = found.images, found.skipped
    maps = check_map_names(images)
    check_output(out, options.overwrite)
    shard = start_shard()
    owned = sum(1 for i in range(len(images)) if shard.owns(i))
    detector, calls = load_detector(options, shard, stack, batches=-(-owned // options.batch_size))
    class_name = check_class_name(detector, options.class_name)
    info = detector.info()
    promise = detector.promise(class_name)  # type: ignore[attr-defined]
    if shard.rank == 0:
        prepare_output(out)
        print(f"scoring {len(images)} images with {info.get('backend')} ({info.get('threads')} threads, "
              f"batch {options.batch_size}, {calls} batch(es) at once, {info.get('device')}, features in "
              f"{info.get('feature_runtime')})", flush=True)
        if skipped:
            print(f"skipped {len(skipped)} ground-truth masks ({GROUND_TRUTH_RULES}); listed in "
                  f"{out / SCORES_JSON} (ground_truth_skipped_files)")
    shard.barrier()
    score_shard(detector, images, maps, shard, options, class_name, calls)
    shard.barrier()
    failed = 0
    if shard.rank == 0:
        counts = merge_parts(out, len(images), shard.world_size)
        failed = counts["failed"]
        header = {
            "checkpoint": str(options.model), "backend": info.get("backend"), "threads": info.get("threads"),
            "concurrent_calls": calls,
            "model_name": info.get("model_name"), "class_name": class_name,
            "image_threshold": promise.get("image_threshold"), "pixel_threshold": info.get("pixel_threshold"),
            # the promise: a good part like the held-out ones is flagged with probability ≤ false_alarm_bound
            "false_alarm_rate": promise.get("false_alarm_rate"), "false_alarm_bound": promise.get("false_alarm_bound"),
            "held_out_normals": promise.get("held_out_normals"),
            "normalized_threshold": 0.5, **skipped_fields(skipped), "world_size": shard.world_size,
            **counts,
        }
        write_json(out, header)
        threshold = promise.get("image_threshold")
        verdicts = (f"{counts['defective']} flagged DEFECT (score above the calibrated threshold {threshold:.6g}, "
                    f"normalised score above 0.5; it flags at most {100 * promise['false_alarm_bound']:.3g} % of good "
                    f"parts like the {promise['held_out_normals']} held-out ones, stated rate "
                    f"{100 * promise['false_alarm_rate']:.3g} %)" if threshold is not None
                    else "no calibrated threshold: no verdicts")
        failures = (f"; {failed} could not be scored (reason in the error column of {out / SCORES_CSV})"
                    if failed else "")
        print(f"scored {counts['scored']} of {counts['inputs']} images; {verdicts}{failures}")
        print(f"scores: {out / SCORES_CSV}" + ("" if not options.maps else f"  maps: {out / MAPS_DIR}"))
    failed = shard.total(failed)
    shard.barrier()
    shard.close()
    return 1 if failed else 0
