"""What a model costs: parameters, FLOPs, inference speed and peak memory of one benchmark cell."""

from __future__ import annotations

import re
import resource
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from defectscope.data.geometry import as_hw
from defectscope.models import AnomalyModel

_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def folder_bytes(path: Path) -> int:
    """Size on disk of a checkpoint folder (or file)."""
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _inputs(batch: int, image_size: int | tuple[int, int], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    images = torch.rand(batch, 3, *as_hw(image_size), generator=generator).to(device)
    return images, torch.zeros(batch, dtype=torch.long, device=device)


@torch.no_grad()
def flops_per_image(model: AnomalyModel, image_size: int, device: torch.device) -> int:
    """FLOPs of one model.predict at batch 1, as torch's FlopCounterMode counts them.

    FlopCounterMode counts matrix multiplications and convolutions (2 FLOPs per multiply-add);
    element-wise work (activations, SSIM windows, distances) is not counted.
    """
    model.eval()
    images, class_ids = _inputs(1, image_size, device)
    with FlopCounterMode(display=False) as counter:
        model.predict(images, class_ids)
    return int(counter.get_total_flops())


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def images_per_second(
    model: AnomalyModel, image_size: int, batch: int, device: torch.device, warmup: int, iterations: int
) -> float:
    """Throughput of model.predict on random images after `warmup` untimed calls."""
    model.eval()
    images, class_ids = _inputs(batch, image_size, device)
    for _ in range(warmup):
        model.predict(images, class_ids)
    _sync(device)
    began = time.perf_counter()
    for _ in range(iterations):
        model.predict(images, class_ids)
    _sync(device)
    seconds = time.perf_counter() - began
    return batch * iterations / seconds if seconds > 0 else float("nan")


def onnxruntime_images_per_second(
    path: Path, image_size: int, batch: int, warmup: int, iterations: int, threads: int | None = None
) -> float:
    """Throughput of an exported graph (`defectscope export`) in onnxruntime on the CPU, on the same
    random images as `images_per_second`; threads None: onnxruntime's default, one per core."""
    from defectscope.export.runtime import OnnxDetector

    detector = OnnxDetector(path, threads=threads)
    images, class_ids = _inputs(batch, image_size, torch.device("cpu"))
    arrays = images.numpy(), class_ids.numpy()
    for _ in range(warmup):
        detector.network(*arrays)
    began = time.perf_counter()
    for _ in range(iterations):
        detector.network(*arrays)
    seconds = time.perf_counter() - began
    return batch * iterations / seconds if seconds > 0 else float("nan")


def reset_peak_memory() -> None:
    """Start a new high-water mark, so one cell's peak is not an earlier cell's."""
    try:  # Linux: writing 5 resets VmHWM (kernel >= 4.0)
        _CLEAR_REFS.write_text("5")
    except OSError:
        pass
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.reset_peak_memory_stats()


def peak_memory() -> dict[str, float]:
    """Peak resident memory since reset_peak_memory (process lifetime where it cannot be reset), in MiB."""
    try:
        found = re.search(r"VmHWM:\s+(\d+)\s+kB", _STATUS.read_text())
    except OSError:
        found = None
    rss = int(found.group(1)) / 1024 if found else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out = {"peak_rss_mib": round(rss, 1)}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mib"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out
