"""How the false-alarm promise holds on normal images that differ from the training ones.

    python scripts/shifted_normals.py runs/thr/padim_mtsd --work /tmp/shifted [--limit 0]

Takes a run's normal test images (label 0 in its scores.csv), writes copies changed the way a
production line changes (brighter light, darker light, a softer focus, the part shifted by a few
pixels, JPEG at a lower quality), runs `defectscope predict` on the run's final checkpoint for each
set, and prints the share flagged DEFECT beside the rate the calibration promised. The unchanged
set is scored too, through the same path, as the reference.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from PIL import Image, ImageChops, ImageEnhance, ImageFilter

REPO_ROOT = Path(__file__).resolve().parents[1]


def _jpeg_q30(image: Image.Image) -> Image.Image:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=30)
    return Image.open(buffer).convert(image.mode)


SHIFTS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "unchanged": lambda im: im,
    "brighter_15pct": lambda im: ImageEnhance.Brightness(im).enhance(1.15),
    "darker_15pct": lambda im: ImageEnhance.Brightness(im).enhance(0.85),
    # a new lot or a relit station: stronger than drift between two days
    "brighter_35pct": lambda im: ImageEnhance.Brightness(im).enhance(1.35),
    "contrast_70pct": lambda im: ImageEnhance.Contrast(im).enhance(0.7),
    "blur_r1.5": lambda im: im.filter(ImageFilter.GaussianBlur(1.5)),
    "shift_8px": lambda im: ImageChops.offset(im, 8, 8),
    "jpeg_q30": _jpeg_q30,
}


def normal_test_images(run: Path) -> list[Path]:
    with (run / "scores.csv").open(newline="") as f:
        return [Path(r["path"]) for r in csv.DictReader(f) if r["label"] == "0"]


def write_set(images: list[Path], folder: Path, change: Callable[[Image.Image], Image.Image]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    for i, path in enumerate(images):
        with Image.open(path) as image:
            # PNG, lossless: the change is the only difference from the original's decoded pixels
            change(image.convert("RGB") if image.mode not in ("L", "RGB") else image).save(
                folder / f"{i:04d}_{path.stem}.png")


def flagged_rows(checkpoint: Path, folder: Path, out: Path, class_name: str | None) -> dict[str, bool]:
    """`defectscope predict` on `folder`: each image's file name → flagged DEFECT."""
    command = [sys.executable, "-m", "defectscope", "predict", str(checkpoint), str(folder), "--output", str(out),
               "--overwrite", "--no-maps", "--device", "cpu"]
    if class_name:
        command += ["--class-name", class_name]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    if proc.returncode != 0:
        raise SystemExit(f"predict failed on {folder}:\n{proc.stderr[-2000:]}")
    rows = json.loads((out / "scores.json").read_text())["images"]
    return {Path(r["path"]).name: r["defective"] is True for r in rows}


def flagged(checkpoint: Path, folder: Path, out: Path, class_name: str | None) -> tuple[int, int]:
    rows = flagged_rows(checkpoint, folder, out, class_name)
    return sum(rows.values()), len(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--work", type=Path, default=Path("/tmp/shifted"))
    parser.add_argument("--limit", type=int, default=0, help="at most this many normal test images (0: all)")
    parser.add_argument("--class-name", default=None, help="for a multi-class run: which class's images")
    args = parser.parse_args()
    checkpoint = args.run / "checkpoints" / "final"
    images = normal_test_images(args.run)
    if args.class_name:
        images = [p for p in images if args.class_name in p.parts]
    images = images[: args.limit] if args.limit else images
    results = json.loads((args.run / "results.json").read_text())
    promised = (results.get("thresholds") or {}).get("false_alarm_bound")  # what the image threshold promises
    print(f"{args.run}: {len(images)} normal test images; promised false-alarm rate ≤ {promised}")
    for name, change in SHIFTS.items():
        folder = args.work / "images" / name
        write_set(images, folder, change)
        count, total = flagged(checkpoint, folder, args.work / "out" / name, args.class_name)
        print(f"  {name:16s} flagged {count:4d}/{total} = {100 * count / total:5.1f} %")


if __name__ == "__main__":
    main()
