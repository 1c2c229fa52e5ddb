"""Peak resident memory of `defectscope predict` on few and on many images: it must not grow with the count.

    python scripts/predict_memory.py --counts 20 2000 --work /tmp/predict_memory

1. Writes a demo-size model (configs/demo.yaml's VQ-E at 128 px, untrained weights: memory does not
   depend on training) as a checkpoint with a calibration, under --work.
2. For each count, writes that many 64x64 RGB PNGs (smooth gradients plus noise, a fixed seed).
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
from defectscope.models import create_model

REPO_ROOT = Path(__file__).resolve().parents[1]


def make_checkpoint(directory: Path) -> Path:
    torch.manual_seed(0)
    cfg = load_config(REPO_ROOT / "configs" / "demo.yaml")
    model = create_model(cfg.model_name, cfg.model, cfg.data.image_size, 1).eval()
    calibration = {"image_threshold": 1.0, "image_score_mean": 0.5, "image_score_std": 0.1, "pixel_threshold": 1.0}
    return save_checkpoint(directory, model, cfg, ["tile"], calibration=calibration)


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
    parser.add_argument("--counts", type=int, nargs="+", default=[20, 2000])
    parser.add_argument("--work", type=Path, default=Path("/tmp/predict_memory"))
    args = parser.parse_args()
    checkpoint = make_checkpoint(args.work / "ckpt")
    for count in args.counts:
        images = make_images(args.work / f"images_{count}", count)
        rss, wall, summary = measure(checkpoint, images, args.work / f"out_{count}")
        print(f"{count:6d} images: peak RSS {rss:.0f} MiB, {wall:.1f} s ({summary})")


if __name__ == "__main__":
    main()
