"""End to end on a line PC: images/s and peak memory of scoring files from disk, torch against onnxruntime.

    python scripts/line_speed.py runs/benchmarks/speed [--images 120] [--batch 1 8] [--threads 0] [--calls 1 2]

For every finished cell of a benchmark folder (benchmarks/speed.yaml), exports the cell's
checkpoint once (`model.onnx` in the cell, parity-checked by `defectscope export`) and, each in a
fresh process so its peak memory is its own, scores the first `--images` test images of the cell
(from its scores.csv, in that order) with `predict`'s own loop (no map pictures): read and decode
the file, resize, network, search, map back to the image's size, verdict, row; `--calls` batches at
once, each on `--threads` threads. Prints a markdown table per
dataset: images/s after two untimed warm-up images, peak resident memory of the process (VmHWM),
the largest score difference from the same cell in torch at batch 1, and the cell's accuracy: image AUROC
and the share of defects caught at 1 % false alarms on the test ROC, with their bootstrap
intervals. Ratios are to the first PatchCore row run with torch at batch 1 in the same run.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# PatchCore's bank searched by faiss: exact (IndexFlatL2), HNSW with exact image scores (model.search kinds;
# imported only in the torch children, so that an onnxruntime child's peak memory holds no torch)
SEARCHES = {"torch+faiss": "faiss", "torch+hnsw": "hnsw"}
# a torch backend with this suffix computes the backbone's features in onnxruntime (what predict and serve do
# where onnxruntime is installed: Detector feature_runtime auto); without it, every torch row is torch alone
ORT_FEATURES = "+ort-features"


def child(args: argparse.Namespace) -> None:
    """One backend × batch × threads on one cell, in this process; prints one JSON line."""
    rows = list(csv.DictReader(open(Path(args.cell) / "scores.csv")))[: args.images]
    backend = args.backend.removesuffix(ORT_FEATURES)
    if backend in ("torch", *SEARCHES):
        import torch

        torch.set_num_threads(args.threads)
        from defectscope.engine.detector import Detector

        detector = Detector.from_checkpoint(Path(args.cell) / "checkpoints" / "final", batch_size=args.batch,
                                            feature_runtime="onnxruntime" if backend != args.backend else "torch")
        if backend in SEARCHES:  # the same bank, searched by faiss
            import faiss

            faiss.omp_set_num_threads(args.threads)
            from defectscope.models.patchcore.config import FaissSearch, HnswSearch

            kinds = {"faiss": FaissSearch(), "hnsw": HnswSearch()}
            detector.checkpoint.model.memory.search = kinds[SEARCHES[backend]]
    else:
        from defectscope.export.runtime import OnnxDetector

        detector = OnnxDetector(Path(args.cell) / "model.onnx", batch_size=args.batch, threads=args.threads)

    def score(chosen: list[dict]) -> dict[str, float]:
        """predict's own loop (read, score, rows; no maps), one class at a time as a predict run takes one."""
        from defectscope.data.discovery import InputImage
        from defectscope.predict.job import PredictOptions, score_shard
        from defectscope.predict.output import PARTS_DIR
        from defectscope.predict.shard import Shard

        found: dict[str, float] = {}
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / PARTS_DIR).mkdir()
            for name in dict.fromkeys(r["class"] for r in chosen):
                paths = [Path(r["path"]) for r in chosen if r["class"] == name]
                images = [InputImage(path, Path(path.name)) for path in paths]
                options = PredictOptions(model=args.cell, inputs=(), output=Path(tmp), batch_size=args.batch,
                                         maps=False)
                part = score_shard(detector, images, [None] * len(images), Shard(), options, name, args.calls)
                with part.open(newline="") as f:
                    found.update((row["path"], float(row["score"])) for row in csv.DictReader(f))
        return found

    began = time.perf_counter()
    score(rows[:2])  # warm-up: first-call allocations, lazy initialisation (faiss builds its index here)
    warm_up = time.perf_counter() - began
    rows.sort(key=lambda r: r["class"])  # stable
    began = time.perf_counter()
    by_path = score(rows)
    seconds = time.perf_counter() - began
    peak = re.search(r"VmHWM:\s+(\d+)", Path("/proc/self/status").read_text())
    print(json.dumps({"images": len(rows), "images_per_second": len(rows) / seconds, "warm_up_seconds": warm_up,
                      "peak_mib": int(peak.group(1)) / 1024 if peak else None,
                      "scores": [by_path[r["path"]] for r in sorted(rows, key=lambda r: r["path"])]}))


def export(cell: Path) -> Path:
    path = cell / "model.onnx"
    if not path.exists():
        subprocess.run([sys.executable, "-m", "defectscope", "export", str(cell / "checkpoints" / "final"),
                        "--output", str(path)], check=True, capture_output=True)
    return path


def measure(cell: Path, backend: str, batch: int, threads: int, calls: int, images: int) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", str(cell), "--backend", backend, "--batch",
                           str(batch), "--threads", str(threads), "--calls", str(calls), "--images", str(images)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": done.stderr.strip().splitlines()[-1] if done.stderr.strip() else f"exit {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def interval(cell: dict, metric: str) -> str:
    """The cell's mean metric with its bootstrap interval (one category) or the mean alone (several)."""
    value = cell["mean"][metric]
    intervals = [v.get(metric) for v in cell.get("intervals", {}).values()]
    if len(intervals) == 1 and intervals[0]:
        low, high = intervals[0]
        return f"{value:.3f} ({low:.3f}–{high:.3f})"
    per = ", ".join(f"{k} {v[metric]:.3f}" for k, v in cell["categories"].items())
    return f"{value:.3f} ({per})"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--backend", default="torch", help=argparse.SUPPRESS)
    p.add_argument("--images", type=int, default=120)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--threads", type=int, nargs="+", default=[0],
                   help="threads per call (0: the available cores shared out among the calls, as predict does)")
    p.add_argument("--calls", type=int, nargs="+", default=[1],
                   help="batches scored at once (predict's --concurrent-calls)")
    p.add_argument("--only", default=".*", help="regular expression on cell ids")
    p.add_argument("--backends", nargs="+", default=["torch", "onnxruntime", *SEARCHES],
                   help="torch+faiss / torch+hnsw: PatchCore with faiss's exact search / HNSW with exact image "
                        f"scores, over the same bank (faiss-cpu); any torch backend + '{ORT_FEATURES}': the "
                        "backbone's features in onnxruntime")
    args = p.parse_args()
    if args.child:
        args.cell, args.batch, args.threads, args.calls = args.child, args.batch[0], args.threads[0], args.calls[0]
        child(args)
        return
    cells = [c for c in sorted(Path(args.folder, "cells").glob("*/cell.json")) if re.search(args.only, c.parent.name)]
    measured: list[tuple[str, str, dict, str, int, int, dict]] = []
    for cell_file in cells:
        cell = json.loads(cell_file.read_text())
        folder = cell_file.parent
        model, dataset = folder.name.split(".")[:2]
        export(folder)
        searches = list(SEARCHES) if model.startswith("patchcore") else []
        torch_backends = ["torch", *searches]
        backends = [b for b in [*torch_backends, "onnxruntime", *(t + ORT_FEATURES for t in torch_backends)]
                    if b in args.backends]
        for backend in backends:
            for batch in args.batch:
                for asked in args.threads:
                    for calls in args.calls:
                        threads = asked or max(1, len(os.sched_getaffinity(0)) // calls)
                        m = measure(folder, backend, batch, threads, calls, args.images)
                        print(folder.name, backend, batch, threads, calls,
                              {k: v for k, v in m.items() if k != "scores"}, file=sys.stderr, flush=True)
                        measured.append((model, dataset, cell, backend, batch, f"{calls} × {threads}", m))
    # the reference of each dataset: PatchCore with its shipped bank (10 %) in torch at batch 1, today's line
    baseline = {d: m["images_per_second"] for model, d, _, backend, batch, _, m in reversed(measured)
                if model == "patchcore_10" and backend == "torch" and batch == 1 and "error" not in m}
    torch_scores = {(model, d): np.array(m["scores"]) for model, d, _, backend, batch, _, m in reversed(measured)
                    if backend == "torch" and batch == 1 and "error" not in m}
    for dataset in dict.fromkeys(d for _, d, *_ in measured):
        print(f"\n### {dataset}: {args.images} test images from disk, end to end\n")
        print("| model | runtime | batch | calls × threads | images/s | × PatchCore 10 % torch | peak MiB "
              "| max score diff to torch | first 2 images s | image AUROC | caught at 1 % FA (test ROC) |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for model, d, cell, backend, batch, threads, m in measured:
            if d != dataset:
                continue
            if "error" in m:
                print(f"| {model} | {backend} | {batch} | {threads} | failed: {m['error']} | | | | | | |")
                continue
            ratio = m["images_per_second"] / baseline[d] if d in baseline else float("nan")
            reference = torch_scores.get((model, d))
            diff = float(np.abs(np.array(m["scores"]) - reference).max()) if reference is not None else float("nan")
            print(f"| {model} | {backend} | {batch} | {threads} | {m['images_per_second']:.1f} | {ratio:.1f}× "
                  f"| {m['peak_mib']:.0f} | {diff:.1e} | {m['warm_up_seconds']:.1f} | {interval(cell, 'image_auroc')} "
                  f"| {interval(cell, 'catch_1pct')} |")

if __name__ == "__main__":
    main()
