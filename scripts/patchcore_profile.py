"""Where a PatchCore image's time goes, in torch: backbone and aggregation, bank search, Eq. 7 re-weighting, map.

    python scripts/patchcore_profile.py RUN/checkpoints/final [--batch 1] [--repeats 20]

Times each stage of `PatchCore.predict` on random images at the working size (after two untimed
calls) and prints milliseconds per image and each stage's share, with the bank's size. Run it on a
quiet machine; the stages are the model's own functions, called as `predict` calls them.
"""

from __future__ import annotations

import argparse
import time

import torch

from defectscope.engine.checkpoint import load_checkpoint
from defectscope.models.patchcore.anomaly_map import patch_scores, reweighted_image_score, upsampled_map


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    model = load_checkpoint(args.checkpoint).model.eval()
    if model.__class__.__name__ != "PatchCore":
        raise SystemExit(f"{args.checkpoint}: a {model.__class__.__name__}, not a PatchCore")
    size = model.image_size if isinstance(model.image_size, tuple) else (model.image_size, model.image_size)
    images = torch.rand(args.batch, 3, *size, generator=torch.Generator().manual_seed(0))
    seconds = {"backbone + 3x3 aggregation": 0.0, "bank search (nearest patch)": 0.0,
               "Eq. 7 re-weighting": 0.0, "map: upsample + Gaussian": 0.0}
    with torch.no_grad():
        for repeat in range(args.repeats + 2):
            marks = [time.perf_counter()]
            features = model.embed(images)
            marks.append(time.perf_counter())
            scores, index, flat, support = patch_scores(features, model.memory, model.config.num_neighbors)
            marks.append(time.perf_counter())
            reweighted_image_score(scores, index, flat, model.memory, model.config.num_neighbors, support)
            marks.append(time.perf_counter())
            upsampled_map(scores, images.shape[-2:], model.config.smoothing_sigma)
            marks.append(time.perf_counter())
            if repeat >= 2:
                for name, began, ended in zip(seconds, marks, marks[1:], strict=False):
                    seconds[name] += ended - began
    total = sum(seconds.values())
    per_image = 1000 / (args.repeats * args.batch)
    bank = tuple(model.memory.bank.shape)
    print(f"bank {bank[0]:,} x {bank[1]}, {size[0]}x{size[1]} px, batch {args.batch}, {torch.get_num_threads()} "
          f"threads: {total * per_image:.1f} ms per image ({1000 / (total * per_image):.1f} images/s)")
    print("| stage | ms per image | share |\n|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value * per_image:.1f} | {100 * value / total:.0f} % |")


if __name__ == "__main__":
    main()
