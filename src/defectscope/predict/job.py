"""`run_predict`: find the inputs, score them a batch at a time, write maps and the score table.

Images are streamed a batch at a time: memory does not grow with the number of inputs, and each
batch's rows and maps are on disk before the next batch is read. An image that cannot be read
becomes a row with its reason instead of stopping the run, and so does an entry named like an
image that is not a regular file (a FIFO, a link to a device, a link loop, a folder): it is never
opened, so a FIFO cannot hang the run. Under torchrun each rank scores every
N-th input and rank 0 merges the rows in input order.
"""

from __future__ import annotations

import csv
import os
import sys
from collections.abc import Iterator
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
    batch_size: int = 8  # images scored and held in memory at once
    device: str = "auto"  # torch backend: auto, cpu or cuda
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"  # auto: onnxruntime for a .onnx file, else torch
    threads: int | None = None  # the runtime's intra-op threads; None: torch's default, or one per available core
    max_image_pixels: int = PREDICT_MAX_IMAGE_PIXELS  # larger images get an error row
    maps: bool = True  # write map pictures
    false_alarm_rate: float | None = None  # thresholds for this stated rate instead of the calibrated one
    feature_runtime: FeatureRuntime = "auto"  # a checkpoint's backbone features: onnxruntime where installed


def load_detector(options: PredictOptions, shard: Shard) -> DetectorLike:
    """The detector that scores: the checkpoint in torch, or an exported model in onnxruntime (no torch)."""
    if backend_of(options) == "onnxruntime":
        if options.feature_runtime == "torch":
            raise ConfigError(f"--feature-runtime torch: {options.model} runs wholly in onnxruntime (an exported "
                              "model); score the run's checkpoint to compute its features in torch")
        try:
            from defectscope.export.runtime import OnnxDetector
        except ModuleNotFoundError as err:
            raise ConfigError(f"--backend onnxruntime: install defectscope[export] / export module missing "
                              f"({err.name} not found)") from err
        return _at_rate(OnnxDetector(options.model, batch_size=options.batch_size, threads=options.threads),
                        options)  # ExportError names it
    import torch

    if options.threads is not None:
        torch.set_num_threads(options.threads)

    from defectscope.engine.detector import Detector, FeatureRuntimeError
    from defectscope.engine.environment import pick_device

    device = pick_device(options.device)
    if device.type == "cuda" and shard.distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    try:
        detector = Detector.from_checkpoint(options.model, device=str(device), batch_size=options.batch_size,
                                            feature_runtime=options.feature_runtime)
    except FeatureRuntimeError as err:  # onnxruntime asked for where it cannot run
        raise ConfigError(f"--feature-runtime: {err}") from err
    return _at_rate(detector, options)


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
                options: PredictOptions, class_name: str | None) -> Path:
    """Score this rank's inputs a batch at a time; each batch's maps and rows are written before the next.

    `maps` holds each input's map path under maps/ (`check_map_names`)."""
    from PIL import Image
    from tqdm import tqdm

    out = options.output
    mine = [(i, image) for i, image in enumerate(images) if shard.owns(i)]
    high = detector.info().get("pixel_threshold")
    promises = {name: detector.promise(name) for name in detector.class_names}  # type: ignore[attr-defined]
    part = part_path(out, shard.rank)
    made: set[Path] = set()
    bar = tqdm(total=len(mine), unit="img", desc="predict", disable=None if shard.rank == 0 else True,
               file=sys.stderr)
    with part.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("index", *COLUMNS))
        f.flush()
        for batch in _batches(mine, options.batch_size):
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
                    if file.parent not in made:
                        file.parent.mkdir(parents=True, exist_ok=True)
                        made.add(file.parent)
                    Image.fromarray(map_picture(array, det.anomaly_map, high)).save(file, compress_level=1)
                verdict = "" if det.defective is None else ("DEFECT" if det.defective else "OK")
                bound = promises[det.class_name].get("false_alarm_bound")
                rows[index] = [str(index), str(image.path), target, det.class_name, _fmt(det.score),
                               _fmt(det.normalized_score), verdict, _fmt(det.threshold), _fmt(bound),
                               _fmt(det.defect_area), ""]
            writer.writerows(rows[index] for index, _ in batch)
            f.flush()
            bar.update(len(batch))
            del arrays, detections  # the next batch must not stack on top of this one
    bar.close()
    return part


def run_predict(options: PredictOptions) -> int:
    """The whole run; returns the exit status: 0, or 1 when some image could not be scored (its row says why)."""
    out = options.output
    found = find_inputs(options.inputs, exclude=out)
    images, skipped = found.images, found.skipped
    maps = check_map_names(images)
    check_output(out, options.overwrite)
    shard = start_shard()
    detector = load_detector(options, shard)
    class_name = check_class_name(detector, options.class_name)
    info = detector.info()
    promise = detector.promise(class_name)  # type: ignore[attr-defined]
    if shard.rank == 0:
        prepare_output(out)
        print(f"scoring {len(images)} images with {info.get('backend')} ({info.get('threads')} threads, "
              f"batch {options.batch_size}, {info.get('device')}, features in {info.get('feature_runtime')})",
              flush=True)
        if skipped:
            print(f"skipped {len(skipped)} ground-truth masks ({GROUND_TRUTH_RULES}); listed in "
                  f"{out / SCORES_JSON} (ground_truth_skipped_files)")
    shard.barrier()
    score_shard(detector, images, maps, shard, options, class_name)
    shard.barrier()
    failed = 0
    if shard.rank == 0:
        counts = merge_parts(out, len(images), shard.world_size)
        failed = counts["failed"]
        header = {
            "checkpoint": str(options.model), "backend": info.get("backend"), "threads": info.get("threads"),
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
