"""Peak resident memory of `defectscope predict`: it must not grow with the image count, nor with an
image's size beyond the image itself when the model works on tiles.

    python scripts/predict_memory.py --counts 20 2000 --sides 1000 4000 --work /tmp/predict_memory

1. Writes two mean_image checkpoints under --work (statistics of random images; memory does not
   depend on what was learnt): one at 128 px (stretch), one on 256 px tiles 192 px apart at the
   images' own size.
2. For each count, that many 64x64 RGB PNGs (smooth gradients plus noise, a fixed seed), scored
   by the 128 px model; for each side, one side x side PNG, scored by the tiled model.
3. Runs `python -m defectscope predict CKPT IMAGES --output OUT` from this checkout under
   `/usr/bin/time -v` and prints its "Maximum resident set size", the wall time and the row count.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defectscope.config import load_config
from defectscope.engine import save_checkpoint
from defectscope.geometry import as_hw
from defectscope.models import create_model
from defectscope.scoring.calibration import Calibration

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(directory: Path, *overrides: str) -> Path:
    torch.manual_seed(0)
    cfg = load_config(None, ["--model.name=mean_image", *overrides])
    model = create_model(cfg.model_name, cfg.model, cfg.data.model_input_size, 1)
    height, width = as_hw(cfg.data.model_input_size)
    model.collect(torch.rand(4, 3, height, width), torch.zeros(4, dtype=torch.long), "statistics")
    model.finish_collection("statistics")
    calibration = Calibration.fit(np.array([0.5, 1.0]), 0.5)  # an image threshold of 1.0; memory needs no more
    return save_checkpoint(directory, model.eval(), cfg, ["part"], calibration=calibration)


def make_large(folder: Path, side: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / f"{side}.png")
    return folder


def make_images(folder: Path, count: int, size: int = 64) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for i in range(count):
        base = 0.3 + 0.3 * ramp[None, :, None] * rng.uniform(0.5, 1.0, 3)
        pixels = np.clip(base + rng.normal(0, 0.05, (size, size, 3)), 0, 1)
        Image.fromarray((pixels * 255).astype(np.uint8)).save(folder / f"{i:05d}.png")
    return folder


def measure(checkpoint: Path, images: Path, out: Path) -> tuple[float, float, str]:
    shutil.rmtree(out, ignore_errors=True)
    began = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-v", sys.executable, "-m", "defectscope", "predict", str(checkpoint),
                           str(images), "--output", str(out), "--device", "cpu"],
                          capture_output=True, text=True, cwd=REPO_ROOT)
    wall = time.perf_counter() - began
    if proc.returncode != 0:
        raise SystemExit(f"predict failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    rss_kib = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    summary = next(line for line in proc.stdout.splitlines() if line.startswith("scored"))
    return rss_kib / 1024, wall, summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="*", default=[20, 2000])
    parser.add_argument("--sides", type=int, nargs="*", default=[1000, 4000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/predict_memory"))
    args = parser.parse_args()
    small = make_checkpoint(args.work / "ckpt_128", "--data.image_size=128")
    for count in args.counts:
        images = make_images(args.work / f"images_{count}", count)
        rss, wall, summary = measure(small, images, args.work / f"out_{count}")
        print(f"{count:6d} images of 64 x 64, 128 px model: peak RSS {rss:.0f} MiB, {wall:.1f} s ({summary})")
    tiled = make_checkpoint(args.work / "ckpt_tiled", "--data.resize=none",
                            "--data.tiling={kind: tiles, tile: 256, stride: 192}")
    for side in args.sides:
        images = make_large(args.work / f"large_{side}", side)
        rss, wall, summary = measure(tiled, images, args.work / f"out_large_{side}")
        print(f"one {side} x {side} image, 256 px tiles: peak RSS {rss:.0f} MiB, {wall:.1f} s ({summary})")


if __name__ == "__main__":
    main()
