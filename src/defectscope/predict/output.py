"""What `defectscope predict` writes under `--output`, and nothing else: names, checks, merging, scores.json.

`scores.csv` and `scores.json` hold one row per input, in input order; `maps/` mirrors each input's
path relative to the folder it was found in (files given directly go at the top), so two
`0001.png` in different folders never share a map. A map is named after its input's stem
(`line1/0001.jpg` → `maps/line1/0001.png`); where two inputs of one map folder share a stem, each
keeps its suffix in the name (`a.jpg`, `a.png` → `a_jpg.png`, `a_png.png`). Each rank writes its
rows to `PARTS_DIR` as it goes; rank 0 merges them into the table, under a temporary name renamed
into place.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from defectscope.data.discovery import InputImage
from defectscope.data.errors import DataError
from defectscope.heatmap import labelled_heat_overlay

MAPS_DIR = "maps"
SCORES_CSV = "scores.csv"
SCORES_JSON = "scores.json"
PARTS_DIR = ".predict-parts"  # each rank's rows until rank 0 merges them
REPORT_HTML = "report.html"  # `defectscope report`'s page of this folder, stale once the scores are replaced
# everything predict writes into --output (and the report of it); --overwrite removes exactly these
OUTPUTS = (SCORES_CSV, SCORES_JSON, MAPS_DIR, PARTS_DIR, f".{SCORES_CSV}.tmp", f".{SCORES_JSON}.tmp", REPORT_HTML)
# threshold and false_alarm_bound: the threshold the verdict used and what it promises (a good part
# like the held-out ones is flagged with probability at most the bound)
COLUMNS = ("path", "map", "class_name", "score", "normalized_score", "verdict", "threshold", "false_alarm_bound",
           "defect_area", "error")
MAP_MAX_SIDE = 512  # map pictures are shrunk to fit this, so a 40 Mpx input gives a small PNG
MAP_MIN_SIDE = 160  # smaller inputs are enlarged (whole factor, nearest pixel) so the picture and its scale read
SKIPPED_LISTED = 1000  # ground-truth files named in scores.json; beyond that, only counted


def map_names(images: Sequence[InputImage]) -> list[Path | None]:
    """Each input's map path under maps/ (None for an entry that is not a file): its stem plus .png,
    with its suffix kept (`a_jpg.png`) where another input of the same map folder has the same stem."""
    def key(relative: Path) -> tuple[Path, str]:
        return relative.parent, relative.stem.casefold()  # casefold: a.JPG and A.png too

    stems = Counter(key(i.relative) for i in images if i.error is None)
    names: list[Path | None] = []
    for image in images:
        relative = image.relative
        if image.error is not None:
            names.append(None)
        elif stems[key(relative)] > 1:
            names.append(relative.with_name(f"{relative.stem}_{relative.suffix[1:]}.png"))
        else:
            names.append(relative.with_name(f"{relative.stem}.png"))
    return names


def check_map_names(images: Sequence[InputImage]) -> list[Path | None]:
    """`map_names`, after checking that no two inputs would share a map (or a map would stand where
    another needs a folder): that is an error naming both, before anything is scored."""
    names = map_names(images)
    hint = "give their common parent folder instead, or run predict once per folder"
    owners: dict[Path, Path] = {}  # map path → the file that writes it
    for image, target in zip(images, names, strict=True):
        if target is None:
            continue
        if target in owners:
            raise DataError(f"{owners[target]} and {image.path} would both be written as {MAPS_DIR}/{target}; "
                            f"{hint}")
        owners[target] = image.path
    for target, path in owners.items():
        for folder in target.parents:
            if folder in owners:
                raise DataError(f"{owners[folder]}'s map {MAPS_DIR}/{folder} would stand where {path}'s map "
                                f"{MAPS_DIR}/{target} needs a folder; {hint}")
    return names


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


def part_path(out: Path, rank: int) -> Path:
    """Where rank `rank` writes its rows (an `index` column first) until rank 0 merges them."""
    return out / PARTS_DIR / f"rank{rank}.csv"


def map_picture(image: np.ndarray, anomaly_map: np.ndarray, high: float | None) -> np.ndarray:
    """[input | heatmap over input] above its colour scale, shrunk to fit MAP_MAX_SIDE; colours from the
    map's median to `high` (the pixel threshold), so red marks pixels beyond what held-out normal pixels reach."""
    return labelled_heat_overlay(image, anomaly_map, high, MAP_MAX_SIDE, MAP_MIN_SIDE)


def skipped_fields(skipped: Sequence[Path]) -> dict[str, Any]:
    """scores.json's account of the ground-truth files left out: how many, the first SKIPPED_LISTED by
    path, and how many of them the list leaves out."""
    return {"ground_truth_skipped": len(skipped),
            "ground_truth_skipped_files": [str(p) for p in skipped[:SKIPPED_LISTED]],
            "ground_truth_skipped_files_left_out": max(0, len(skipped) - SKIPPED_LISTED)}


def merge_parts(out: Path, total: int, world_size: int) -> dict[str, int]:
    """Rank files → scores.csv in input order (row i came from rank i % world_size), written under a
    temporary name and renamed, so a crash never leaves half a table; returns the counts."""
    # "inputs", not "images": scores.json's rows go under "images", and a key twice in one object loses one
    counts = {"inputs": total, "scored": 0, "failed": 0, "defective": 0}
    tmp = out / f".{SCORES_CSV}.tmp"
    files = [part_path(out, r).open(newline="") for r in range(world_size)]
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
