"""`defectscope predict CHECKPOINT INPUT...`: score new images, write heatmaps and a score table.

Outputs under `--output`: `scores.csv` and `scores.json` (one row per input, in input order) and
`maps/`, which mirrors each input's path relative to the folder it was found in (files given
directly go at the top), so two `0001.png` in different folders never share a map. Images are
streamed a batch at a time: memory does not grow with the number of inputs. Under torchrun each
rank scores every N-th input and rank 0 merges the rows in input order.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from defectscope.config import ConfigError
from defectscope.data.errors import DataError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})
# data/image_io.py has no pixel cap of its own; 40 Mpx decodes to ~0.5 GB as float32 RGB, so a
# batch of such images still fits a workstation, and PIL's own bomb warning (89 Mpx) never fires
MAX_IMAGE_PIXELS = 40_000_000
MAPS_DIR = "maps"
SCORES_CSV = "scores.csv"
SCORES_JSON = "scores.json"
PARTS_DIR = ".predict-parts"  # each rank's rows until rank 0 merges them
# everything predict writes into --output; --overwrite removes exactly these
OUTPUTS = (SCORES_CSV, SCORES_JSON, MAPS_DIR, PARTS_DIR, f".{SCORES_CSV}.tmp", f".{SCORES_JSON}.tmp")
COLUMNS = ("path", "map", "class_name", "score", "normalized_score", "verdict", "defect_area", "error")
MAP_MAX_SIDE = 512  # map pictures are shrunk to fit this, so a 40 Mpx input gives a small PNG


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
    p.add_argument("--batch-size", type=int, default=8, help="images scored and held in memory at once")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (torch backend)")
    p.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    p.add_argument("--max-image-pixels", type=int, default=MAX_IMAGE_PIXELS,
                   help="larger images (width x height, read from the header) get an error row instead of a score "
                        "(default %(default)d)")
    p.add_argument("--no-maps", action="store_true", help="write scores only")
    p.set_defaults(run=run)


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class InputImage:
    path: Path  # as found: the input folder joined with the path below it
    relative: Path  # below its input folder (just the name for a file given directly)


def map_path(relative: Path) -> Path:
    """The map's path under maps/: the input's own name plus .png, so `a.jpg` and `a.png` stay apart."""
    return relative.with_name(relative.name + ".png")


class _Siblings:
    """Per folder: which suffixes each stem has, listed once, to recognise MTSD's masks."""

    def __init__(self) -> None:
        self._cache: dict[Path, dict[str, set[str]]] = {}

    def suffixes(self, path: Path) -> set[str]:
        folder = path.parent
        if folder not in self._cache:
            listing: dict[str, set[str]] = {}
            with os.scandir(folder) as entries:
                for entry in entries:
                    name = Path(entry.name)
                    listing.setdefault(name.stem, set()).add(name.suffix.lower())
            self._cache[folder] = listing
        return self._cache[folder].get(path.stem, set())


def is_ground_truth(path: Path, siblings: _Siblings | None = None) -> bool:
    """A layout's mask: anything under a `ground_truth/` folder, `*_mask.*`, or MTSD's `NAME.png`
    beside its image `NAME.jpg` (any other image suffix)."""
    if "ground_truth" in path.parts[:-1] or path.stem.endswith("_mask"):
        return True
    if path.suffix.lower() != ".png":
        return False
    return bool((siblings or _Siblings()).suffixes(path) & (IMAGE_SUFFIXES - {".png"}))


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and not path.name.startswith(".")


def collect_inputs(inputs: Sequence[str], exclude: Path | None = None) -> tuple[list[InputImage], int]:
    """Images in the order given (each folder's files sorted), and how many ground-truth files were skipped.

    Files under `exclude` (the output folder) are left out, so maps of an earlier run inside an
    input folder are never scored. The same file reached twice is scored once; two files that
    would share a map are an error naming both, before anything is scored.
    """
    siblings = _Siblings()
    excluded = exclude.resolve() if exclude is not None else None
    found: list[InputImage] = []
    skipped = 0
    for item in inputs:
        root = Path(item)
        if root.is_dir():
            candidates = sorted(
                p for p in root.rglob("*")
                if _is_image(p) and p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
            )
            pairs = [(p, p.relative_to(root)) for p in candidates]
        elif root.is_file():
            pairs = [(root, Path(root.name))]
        else:
            raise DataError(f"{root}: no such file or folder")
        for path, relative in pairs:
            if excluded is not None and path.resolve().is_relative_to(excluded):
                continue
            if is_ground_truth(path, siblings):
                skipped += 1
            else:
                found.append(InputImage(path, relative))
    if not found:
        note = f" ({skipped} ground-truth masks skipped)" if skipped else ""
        raise DataError(f"no images found in {', '.join(inputs)}{note} "
                        f"(suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return _unique(found), skipped


def _unique(found: list[InputImage]) -> list[InputImage]:
    seen: dict[Path, Path] = {}  # resolved file → the map path it took
    owners: dict[Path, Path] = {}  # map path → the file that writes it
    out = []
    for image in found:
        real = image.path.resolve()
        if real in seen:
            continue
        target = map_path(image.relative)
        if target in owners:
            raise DataError(f"{owners[target]} and {image.path} would both be written as {MAPS_DIR}/{target}; "
                            "give their common parent folder instead, or run predict once per folder")
        seen[real], owners[target] = target, image.path
        out.append(image)
    return out


# --------------------------------------------------------------------------- output folder


def check_output(out: Path, overwrite: bool) -> None:
    """Refuse, before any scoring, a path that is not a writable folder or that holds files, unless --overwrite."""
    if out.exists() and not out.is_dir():
        raise DataError(f"--output {out}: exists and is not a folder")
    if out.is_dir():
        if not os.access(out, os.W_OK | os.X_OK):
            raise DataError(f"--output {out}: folder is not writable")
        contents = sorted(p.name for p in out.iterdir())
        if contents and not overwrite:
            raise DataError(f"--output {out}: folder is not empty ({', '.join(contents[:5])}"
                            f"{', ...' if len(contents) > 5 else ''}); choose another folder, or pass --overwrite "
                            f"to replace what predict wrote there ({', '.join(OUTPUTS[:3])}) and keep the rest")
        return
    parent = next((p for p in out.absolute().parents if p.exists()), None)
    if parent is None or not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise DataError(f"--output {out}: cannot create it ({parent} is not a writable folder)")


def prepare_output(out: Path) -> None:
    """Remove what an earlier predict wrote (and nothing else), then make the folders this run writes."""
    try:
        for name in OUTPUTS:
            target = out / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
        (out / MAPS_DIR).mkdir(parents=True, exist_ok=True)
        (out / PARTS_DIR).mkdir(exist_ok=True)
    except OSError as err:
        raise DataError(f"--output {out}: {err.strerror or err}") from err


# --------------------------------------------------------------------------- distribution


@dataclass(frozen=True)
class Shard:
    """This process's share of the inputs: every `world_size`-th one from `rank`."""

    rank: int = 0
    world_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    def barrier(self) -> None:
        if self.distributed:
            import torch.distributed as dist

            dist.barrier()

    def total(self, value: int) -> int:
        """Sum of `value` over ranks."""
        if not self.distributed:
            return value
        import torch
        import torch.distributed as dist

        tensor = torch.tensor([value], dtype=torch.long)
        dist.all_reduce(tensor)
        return int(tensor.item())


def start_shard() -> Shard:
    """Under torchrun (WORLD_SIZE > 1): join the process group over gloo, which needs no GPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Shard()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo")
    return Shard(dist.get_rank(), dist.get_world_size())


# --------------------------------------------------------------------------- scoring


def _detector(args: argparse.Namespace, shard: Shard) -> Any:
    """The `DetectorLike` that scores: the checkpoint in torch, or an exported model in onnxruntime."""
    if args.backend == "onnxruntime":
        try:
            from defectscope.export.runtime import OnnxDetector
        except ModuleNotFoundError as err:
            raise ConfigError(f"--backend onnxruntime: install defectscope[export] / export module missing "
                              f"({err.name} not found)") from err
        return OnnxDetector(args.checkpoint)
    import torch

    from defectscope.cli.common import pick_device
    from defectscope.engine.detector import Detector

    device = pick_device(args.device)
    if device.type == "cuda" and shard.distributed:
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")) % torch.cuda.device_count())
    return Detector.from_checkpoint(args.checkpoint, device=str(device), batch_size=args.batch_size)


def _class_name(detector: Any, wanted: str | None) -> str | None:
    names = list(detector.class_names)
    if wanted is None and len(names) > 1:
        raise ConfigError(f"this model knows {len(names)} classes ({', '.join(names)}); name the images' "
                          "class with --class-name")
    if wanted is not None and wanted not in names:
        raise ConfigError(f"--class-name {wanted!r} is not one of {names}")
    return wanted


def _read(image: InputImage, max_pixels: int) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1] by load_image's rules; the pixel count is read from the header first."""
    from defectscope.data.image_io import image_size, load_image

    width, height = image_size(image.path)
    if width * height > max_pixels:
        raise DataError(f"{width}x{height} = {width * height / 1e6:.1f} Mpx is over the cap of "
                        f"{max_pixels / 1e6:.1f} Mpx (--max-image-pixels {max_pixels})")
    return load_image(image.path).permute(1, 2, 0).numpy()


def map_picture(image: np.ndarray, anomaly_map: np.ndarray, high: float | None) -> np.ndarray:
    """[input | heatmap over input], shrunk to fit MAP_MAX_SIDE; colours from the map's median to `high`
    (the pixel threshold), so red marks pixels beyond what held-out normal pixels reach."""
    from PIL import Image

    from defectscope.engine.gallery import heat_colormap

    height, width = anomaly_map.shape
    scale = min(1.0, MAP_MAX_SIDE / max(width, height))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    rgb = np.asarray(Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).resize(size, Image.BILINEAR))
    amap = np.asarray(Image.fromarray(anomaly_map.astype(np.float32), "F").resize(size, Image.BILINEAR))
    high = float(amap.max()) if high is None else high
    low = min(float(np.median(amap)), high)
    heat = heat_colormap((amap - low) / (high - low) if high > low else (amap >= high).astype(np.float32))
    blend = (0.5 * rgb.astype(np.float32) + 0.5 * heat).astype(np.uint8)
    return np.concatenate([rgb, blend], axis=1)


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.9g}"


def _batches(items: list[tuple[int, InputImage]], size: int) -> Iterator[list[tuple[int, InputImage]]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def score_shard(
    detector: Any, images: list[InputImage], shard: Shard, out: Path, args: argparse.Namespace,
    class_name: str | None,
) -> Path:
    """Score this rank's inputs a batch at a time; each batch's maps and rows are written before the next."""
    from PIL import Image
    from tqdm import tqdm

    mine = [(i, image) for i, image in enumerate(images) if i % shard.world_size == shard.rank]
    high = detector.info().get("pixel_threshold")
    part = out / PARTS_DIR / f"rank{shard.rank}.csv"
    made: set[Path] = set()
    bar = tqdm(total=len(mine), unit="img", desc="predict", disable=None if shard.rank == 0 else True,
               file=sys.stderr)
    with part.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("index", *COLUMNS))
        f.flush()
        for batch in _batches(mine, args.batch_size):
            arrays: list[np.ndarray] = []
            read: list[tuple[int, InputImage]] = []
            rows: dict[int, list[str]] = {}
            for index, image in batch:
                try:
                    arrays.append(_read(image, args.max_image_pixels))
                    read.append((index, image))
                except (DataError, OSError) as err:
                    rows[index] = [str(index), str(image.path), "", "", "", "", "", "", str(err)]
            detections = detector.score(arrays, class_name) if arrays else []
            for (index, image), array, det in zip(read, arrays, detections, strict=True):
                target = ""
                if not args.no_maps:
                    target = map_path(image.relative).as_posix()
                    file = out / MAPS_DIR / target
                    if file.parent not in made:
                        file.parent.mkdir(parents=True, exist_ok=True)
                        made.add(file.parent)
                    Image.fromarray(map_picture(array, det.anomaly_map, high)).save(file, compress_level=1)
                verdict = "" if det.defective is None else ("DEFECT" if det.defective else "OK")
                rows[index] = [str(index), str(image.path), target, det.class_name, _fmt(det.score),
                               _fmt(det.normalized_score), verdict, _fmt(det.defect_area), ""]
            writer.writerows(rows[index] for index, _ in batch)
            f.flush()
            bar.update(len(batch))
            del arrays, detections  # the next batch must not stack on top of this one
    bar.close()
    return part


# --------------------------------------------------------------------------- merging


def merge_parts(out: Path, total: int, world_size: int) -> dict[str, int]:
    """Rank files → scores.csv in input order (row i came from rank i % world_size), written under a
    temporary name and renamed, so a crash never leaves half a table; returns the counts."""
    counts = {"images": total, "scored": 0, "failed": 0, "defective": 0}
    tmp = out / f".{SCORES_CSV}.tmp"
    files = [(out / PARTS_DIR / f"rank{r}.csv").open(newline="") for r in range(world_size)]
    try:
        readers = [csv.DictReader(f) for f in files]
        with tmp.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=COLUMNS)
            writer.writeheader()
            for i in range(total):
                row = next(readers[i % world_size])
                if int(row.pop("index")) != i:
                    raise RuntimeError(f"rank {i % world_size}'s rows are out of order at input {i}")
                counts["failed"] += bool(row["error"])
                counts["scored"] += not row["error"]
                counts["defective"] += row["verdict"] == "DEFECT"
                writer.writerow(row)
    finally:
        for f in files:
            f.close()
    tmp.replace(out / SCORES_CSV)
    shutil.rmtree(out / PARTS_DIR, ignore_errors=True)
    return counts


def _typed(row: dict[str, str]) -> dict[str, Any]:
    def number(key: str) -> float | None:
        return float(row[key]) if row[key] else None

    return {
        "path": row["path"], "map": row["map"] or None, "class_name": row["class_name"] or None,
        "score": number("score"), "normalized_score": number("normalized_score"),
        "verdict": row["verdict"] or None,
        "defective": None if not row["verdict"] else row["verdict"] == "DEFECT",
        "defect_area": number("defect_area"), "error": row["error"] or None,
    }


def write_json(out: Path, header: dict[str, Any]) -> None:
    """scores.json streamed from scores.csv one row at a time (memory stays flat), then renamed into place."""
    tmp = out / f".{SCORES_JSON}.tmp"
    with tmp.open("w") as f, (out / SCORES_CSV).open(newline="") as source:
        f.write(json.dumps(header, indent=2)[:-2] + ',\n  "images": [')
        for n, row in enumerate(csv.DictReader(source)):
            f.write(("," if n else "") + "\n    " + json.dumps(_typed(row)))
        f.write("\n  ]\n}\n")
    tmp.replace(out / SCORES_JSON)


# --------------------------------------------------------------------------- the verb


def _check_options(args: argparse.Namespace, overrides: list[str]) -> None:
    if overrides:
        raise ConfigError(f"predict: unknown arguments {overrides} (the model's settings come from its checkpoint)")
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    if args.max_image_pixels < 1:
        raise ConfigError(f"--max-image-pixels must be at least 1, got {args.max_image_pixels}")


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    _check_options(args, overrides)
    out = Path(args.output)
    images, skipped = collect_inputs(args.inputs, exclude=out)
    check_output(out, args.overwrite)
    shard = start_shard()
    detector = _detector(args, shard)
    class_name = _class_name(detector, args.class_name)
    info = detector.info()
    if shard.rank == 0:
        prepare_output(out)
        if skipped:
            print(f"skipped {skipped} ground-truth masks (files under ground_truth/, *_mask.*, and MTSD's NAME.png "
                  "beside NAME.jpg)")
    shard.barrier()
    score_shard(detector, images, shard, out, args, class_name)
    shard.barrier()
    failed = 0
    if shard.rank == 0:
        counts = merge_parts(out, len(images), shard.world_size)
        failed = counts["failed"]
        header = {
            "checkpoint": str(args.checkpoint), "backend": info.get("backend", args.backend),
            "model_name": info.get("model_name"), "class_name": class_name,
            "image_threshold": info.get("image_threshold"), "pixel_threshold": info.get("pixel_threshold"),
            "false_alarm_rate": info.get("image_false_alarm_rate"),
            "normalized_threshold": 0.5, "ground_truth_skipped": skipped, "world_size": shard.world_size,
            **counts,
        }
        write_json(out, header)
        threshold = info.get("image_threshold")
        verdicts = (f"{counts['defective']} flagged DEFECT (score above the calibrated threshold {threshold:.6g}, "
                    "normalised score above 0.5)" if threshold is not None else "no calibrated threshold: no verdicts")
        failures = (f"; {failed} could not be scored (reason in the error column of {out / SCORES_CSV})"
                    if failed else "")
        print(f"scored {counts['scored']} of {counts['images']} images; {verdicts}{failures}")
        print(f"scores: {out / SCORES_CSV}" + ("" if args.no_maps else f"  maps: {out / MAPS_DIR}"))
    failed = shard.total(failed)
    shard.barrier()
    if shard.distributed:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 1 if failed else 0
