"""Export every model, check onnxruntime against torch on demo images, and time both on the CPU.

For each model: its shipped config (configs/<model>/...) at --size px, fitted a little on the demo
data (collect models fit their bank / Gaussians on demo normal images, gradient models take one
training step for their lazily-built state: the weights are untrained, which changes nothing about
speed or parity), calibrated on held-out demo normal images and saved; then `export_onnx`, parity
of Detector vs OnnxDetector on demo test images (maps at each image's size, scores), and images/s
of `Checkpoint.predict` vs the onnxruntime session on the same (B, 3, S, S) batch, timed in turns
(torch, onnxruntime, torch, ...) so that load from other processes hits both alike; the best turn
of each is reported. With --profile, onnxruntime's profiler splits the graph's time by operator.

    python scripts/export_speed.py --size 128 --threads 2 --out runs/export_speed [--models padim,vq_e]
    python scripts/export_speed.py --checkpoint runs/x/checkpoints/final   # a trained model instead
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defectscope.config import load_config
from defectscope.data.transforms import resize_image
from defectscope.detection import image_array
from defectscope.engine import load_checkpoint, save_checkpoint
from defectscope.engine.checkpoint import Checkpoint
from defectscope.engine.detector import Detector
from defectscope.engine.environment import git_commit
from defectscope.export.onnx_graph import export_onnx
from defectscope.export.runtime import OnnxDetector
from defectscope.layers.backbones import BackboneConfig, BackboneWeightsError
from defectscope.models import create_model
from defectscope.models.base import StepContext
from defectscope.scoring.calibration import Calibration

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "demo" / "mtsd_mini"
CONFIGS = {
    "ae_ssim": "ae_ssim/mtsd.yaml", "vq_e": "vq_e/mtsd.yaml", "pvqae": "pvqae/small.yaml",
    "patchcore": "patchcore/mtsd.yaml", "padim": "padim/mtsd.yaml", "fader": "fader/small.yaml",
    "vitae": "vitae/small.yaml",
}
DEFECTS = ("MT_Blowhole", "MT_Break", "MT_Crack", "MT_Fray", "MT_Uneven")


def demo(folder: str, count: int, start: int = 0) -> list[np.ndarray]:
    paths = sorted((DEMO / folder / "Imgs").glob("*.jpg"))[start : start + count]
    return [np.asarray(Image.open(p).convert("L")) for p in paths]


def batch_of(images: list[np.ndarray], size: int) -> torch.Tensor:
    return torch.stack([resize_image(torch.from_numpy(image_array(a, i)).permute(2, 0, 1), size)
                        for i, a in enumerate(images)])


def random_backbones(cfg: object) -> object:
    """The same architecture with random backbone weights, when the pretrained ones are not installed."""
    changes = {f.name: dataclasses.replace(getattr(cfg, f.name), pretrained=False) for f in dataclasses.fields(cfg)
               if isinstance(getattr(cfg, f.name), BackboneConfig)}
    if "backbone_pretrained" in {f.name for f in dataclasses.fields(cfg)}:
        changes["backbone_pretrained"] = False
    return dataclasses.replace(cfg, **changes)


@torch.no_grad()
def fitted(cfg: object, name: str, size: int, train: torch.Tensor) -> torch.nn.Module:
    """Collect models fit on `train`; gradient models take one step (k-means codebooks and the like)."""
    torch.manual_seed(0)
    model = create_model(name, cfg.model, size, 1)
    ids = torch.zeros(len(train), dtype=torch.long)
    for phase in model.phases():
        if phase.kind == "collect":
            for start in range(0, len(train), 8):
                model.collect(train[start : start + 8], ids[start : start + 8], phase.name)
            model.finish_collection(phase.name)
        else:
            with torch.enable_grad():
                model.training_step(train[:8], ids[:8], StepContext(0, phase=phase.name))
            break
    return model.eval()


@torch.no_grad()
def build(name: str, size: int, folder: Path, train_images: int) -> tuple[Path, str]:
    """Fit a little on demo normal images, calibrate on others, save; returns (checkpoint, note)."""
    cfg = load_config(REPO / "configs" / CONFIGS[name], ["--data.image_size", str(size)])
    train = batch_of(demo("MT_Free", train_images), size)
    held = batch_of(demo("MT_Free", 8, start=train_images), size)
    note = ""
    try:
        model = fitted(cfg, name, size, train)
    except BackboneWeightsError:
        cfg = dataclasses.replace(cfg, model=random_backbones(cfg.model))
        note = "random backbone weights (pretrained ones not installed)"
        model = fitted(cfg, name, size, train)
    out = model.predict(held, torch.zeros(len(held), dtype=torch.long))
    calibration = Calibration.fit(out.image_score.numpy(), 1 / 9, out.anomaly_map.numpy(), 0.001)  # 8 held out
    return save_checkpoint(folder / "ckpt", model, cfg, ["mtsd"], calibration=calibration), note


def parity(checkpoint: Checkpoint, onnx: OnnxDetector, normal_start: int) -> dict[str, float]:
    """Detector vs OnnxDetector on demo test images at their own sizes (2 per defect class + 2 normal
    ones that neither fitting nor calibration saw)."""
    images = [a for d in DEFECTS for a in demo(d, 2)] + demo("MT_Free", 2, start=normal_start)
    ref = Detector(checkpoint, feature_runtime="torch").score(images)  # torch is the reference
    got = onnx.score(images)
    pairs = list(zip(ref, got, strict=True))
    return {
        "images": len(images),
        "max_map_diff": max(float(np.abs(r.anomaly_map - g.anomaly_map).max()) for r, g in pairs),
        "max_score_diff": max(abs(r.score - g.score) for r, g in pairs),
        "max_abs_map": max(float(np.abs(r.anomaly_map).max()) for r in ref),
        "verdicts_equal": all(r.defective == g.defective for r, g in pairs),
    }


@torch.no_grad()
def speeds(checkpoint: Checkpoint, onnx: OnnxDetector, batch: int, repeats: int, seconds: float) -> dict:
    """images/s of torch and onnxruntime, timed in alternating turns of about `seconds` each."""
    size = onnx.image_size
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(batch, dtype=torch.long)
    arrays = images.numpy(), ids.numpy()
    runners = {"torch": lambda: checkpoint.model.predict(images, ids), "onnxruntime": lambda: onnx.network(*arrays)}
    iterations = {}
    for key, fn in runners.items():  # warm up, then size the turns
        fn()
        began = time.perf_counter()
        fn()
        iterations[key] = max(1, round(seconds / max(time.perf_counter() - began, 1e-6)))
    turns = defaultdict(list)
    for _ in range(repeats):
        for key, fn in runners.items():
            began = time.perf_counter()
            for _ in range(iterations[key]):
                fn()
            turns[key].append(batch * iterations[key] / (time.perf_counter() - began))
    return {key: {"best": max(v), "median": statistics.median(v)} for key, v in turns.items()}


def ort_profile(path: Path, batch: int, threads: int, runs: int, prefix: Path) -> list[dict]:
    """onnxruntime's profiler: kernel time per operator type, largest first, as a share of all kernels."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.enable_profiling = True
    options.profile_file_prefix = str(prefix)
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    size = session.get_inputs()[0].shape[-1]
    feeds = {"images": np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)}
    if len(session.get_inputs()) > 1:
        feeds["class_ids"] = np.zeros(batch, np.int64)
    session.run(None, feeds)  # the first run's allocations are not the steady state
    for _ in range(runs):
        session.run(None, feeds)
    events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += event["dur"]
    total = sum(totals.values())
    per_image_ms = 1e-3 / (batch * (runs + 1))
    return [{"op": op, "share": round(dur / total, 3), "ms_per_image": round(dur * per_image_ms, 3)}
            for op, dur in sorted(totals.items(), key=lambda kv: -kv[1])[:6]]


@torch.no_grad()
def torch_profile(checkpoint: Checkpoint, batch: int, runs: int) -> list[dict]:
    """torch's profiler on the same batch: self CPU time per aten op, largest first."""
    from torch.profiler import ProfilerActivity, profile

    size = int(checkpoint.config.data.image_size)
    images = torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(0))
    ids = torch.zeros(batch, dtype=torch.long)
    checkpoint.model.predict(images, ids)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(runs):
            checkpoint.model.predict(images, ids)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3),
             "ms_per_image": round(e.self_cpu_time_total / 1e3 / (batch * runs), 3)}
            for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(CONFIGS))
    parser.add_argument("--checkpoint", action="append", default=[], help="time this checkpoint (repeatable)")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--threads", type=int, default=2, help="torch and onnxruntime threads alike")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="length of one timed turn")
    parser.add_argument("--train-images", type=int, default=24)
    parser.add_argument("--profile", action="store_true", help="onnxruntime operator profile at the largest batch")
    parser.add_argument("--torch-profile", action="store_true", help="torch's op profile at the largest batch")
    parser.add_argument("--out", default="runs/export_speed")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(Path(c).name, Path(c), "given checkpoint") for c in args.checkpoint] or [
        (m, None, "") for m in args.models.split(",")]
    rows = []
    for name, given, note in jobs:
        folder = out / name
        began = time.perf_counter()
        if given is None:
            given, note = build(name, args.size, folder, args.train_images)
        checkpoint = load_checkpoint(given)
        built = time.perf_counter() - began
        began = time.perf_counter()
        info = export_onnx(checkpoint, folder / "model.onnx")
        exported = time.perf_counter() - began
        onnx = OnnxDetector(folder / "model.onnx", threads=args.threads)
        row = {"model": info.model_name, "image_size": info.image_size, "note": note, "exporter": info.exporter,
               "opset": info.opset, "onnx_mib": round((folder / "model.onnx").stat().st_size / 2**20, 2),
               "build_s": round(built, 1), "export_s": round(exported, 1),
               "parity": parity(checkpoint, onnx, normal_start=args.train_images + 8),
               "speed": {str(b): speeds(checkpoint, onnx, b, args.repeats, args.seconds) for b in args.batches}}
        if args.profile:
            row["ort_profile"] = ort_profile(folder / "model.onnx", max(args.batches), args.threads, 5,
                                             folder / "ort_profile")
        if args.torch_profile:
            row["torch_profile"] = torch_profile(checkpoint, max(args.batches), 3)
        rows.append(row)
        print(json.dumps(row), flush=True)
    meta = {"commit": git_commit(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "threads": args.threads, "torch": torch.__version__, "load_average": [round(x, 1) for x in os.getloadavg()],
            "argv": sys.argv[1:]}
    (out / "export_speed.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(table(rows, args.batches))
    return 0


def table(rows: list[dict], batches: list[int]) -> str:
    head = ["model", "max map diff (map max)", "max score diff"]
    for b in batches:
        head += [f"torch img/s b{b}", f"onnxruntime img/s b{b}", f"ratio b{b}"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r["parity"]
        cells = [r["model"], f"{p['max_map_diff']:.1e} ({p['max_abs_map']:.3g})", f"{p['max_score_diff']:.1e}"]
        for b in batches:
            s = r["speed"][str(b)]
            cells += [f"{s['torch']['best']:.1f}", f"{s['onnxruntime']['best']:.1f}",
                      f"{s['onnxruntime']['best'] / s['torch']['best']:.2f}×"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
