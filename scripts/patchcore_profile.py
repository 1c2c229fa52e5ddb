"""Where a PatchCore image's time goes, in torch: backbone and aggregation, bank search, the exact
pass over each image's farthest patches (HNSW), Eq. 7 re-weighting, map.

    python scripts/patchcore_profile.py RUN/checkpoints/final [--batch 1] [--repeats 20]
        [--images CELL/scores.csv] [--search torch|faiss|hnsw] [--features torch|onnxruntime]

Times each stage of `PatchCore.predict` at the working size (after two untimed calls) and prints
milliseconds per image and each stage's share, with the bank's size. Images: random ones, or the
first --repeats of a run's scores.csv, read and resized as `predict` does (random images are the
worst case for HNSW: all their patches are far from the bank). `--search` overrides the
checkpoint's search over the same bank. Run it on a quiet machine; the stages are the model's own
functions, called as `predict` calls them.
"""

from __future__ import annotations

import argparse
import csv
import time

import numpy as np
import torch

from defectscope.data.image_io import load_image_array
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.models.patchcore.anomaly_map import reweighted_image_score, upsampled_map
from defectscope.models.patchcore.config import FaissSearch, HnswSearch, TorchSearch
from defectscope.scoring.resize import fit_array

STAGES = ("backbone + 3x3 aggregation", "bank search (nearest patch)", "exact pass, farthest patches (HNSW)",
          "Eq. 7 re-weighting", "map: upsample + Gaussian")


def batches(args: argparse.Namespace, size: tuple[int, int], resize: str) -> list[torch.Tensor]:
    if not args.images:
        return [torch.rand(args.batch, 3, *size, generator=torch.Generator().manual_seed(0))] * (args.repeats + 2)
    rows = list(csv.DictReader(open(args.images)))[: (args.repeats + 2) * args.batch]
    arrays = [fit_array(load_image_array(r["path"]), size, resize)[0] for r in rows]
    return [torch.from_numpy(np.stack(arrays[i : i + args.batch]).astype(np.float32))
            for i in range(0, len(arrays) - args.batch + 1, args.batch)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--images", default=None, help="a run's scores.csv: its first images instead of random ones")
    p.add_argument("--search", choices=["torch", "faiss", "hnsw"], default=None)
    p.add_argument("--features", choices=["torch", "onnxruntime"], default="torch",
                   help="what computes the backbone's features (onnxruntime: as predict and serve prepare it)")
    args = p.parse_args()
    checkpoint = load_checkpoint(args.checkpoint)
    model = checkpoint.model.eval()
    if model.__class__.__name__ != "PatchCore":
        raise SystemExit(f"{args.checkpoint}: a {model.__class__.__name__}, not a PatchCore")
    if args.search:
        model.memory.search = {"torch": TorchSearch(), "faiss": FaissSearch(), "hnsw": HnswSearch()}[args.search]
    model.prepare(onnxruntime_threads=torch.get_num_threads() if args.features == "onnxruntime" else None)
    size = model.image_size if isinstance(model.image_size, tuple) else (model.image_size, model.image_size)
    seconds = dict.fromkeys(STAGES, 0.0)
    memory, neighbours = model.memory, model.config.num_neighbors
    counted = 0
    with torch.no_grad():
        for repeat, images in enumerate(batches(args, size, checkpoint.config.data.resize)):
            marks = [time.perf_counter()]
            features = model.embed(images)
            marks.append(time.perf_counter())
            b, c, h, w = features.shape
            flat = features.permute(0, 2, 3, 1).reshape(b, h * w, c)
            dist, index = memory.nearest_patches(flat.reshape(-1, c))
            dist, index = dist.view(b, h * w), index.view(b, h * w)
            marks.append(time.perf_counter())
            support = memory.refine_maxima(dist, index, flat, neighbours)
            marks.append(time.perf_counter())
            reweighted_image_score(dist.view(b, h, w), index.view(b, h, w), flat, memory, neighbours, support)
            marks.append(time.perf_counter())
            upsampled_map(dist.view(b, h, w), images.shape[-2:], model.config.smoothing_sigma)
            marks.append(time.perf_counter())
            if repeat >= 2:
                counted += b
                for name, began, ended in zip(seconds, marks, marks[1:], strict=False):
                    seconds[name] += ended - began
    total = sum(seconds.values())
    per_image = 1000 / counted
    bank = tuple(memory.bank.shape)
    print(f"bank {bank[0]:,} x {bank[1]}, search {memory.search.kind}, {size[0]}x{size[1]} px, batch {args.batch}, "
          f"{'test images' if args.images else 'random images'}, {torch.get_num_threads()} threads, features in "
          f"{model.feature_runtime}: "
          f"{total * per_image:.1f} ms per image ({1000 / (total * per_image):.1f} images/s)")
    print("| stage | ms per image | share |\n|---|---|---|")
    for name, value in seconds.items():
        print(f"| {name} | {value * per_image:.1f} | {100 * value / total:.0f} % |")


if __name__ == "__main__":
    main()
