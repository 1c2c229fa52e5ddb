"""Serve tests' helpers: a tiny untrained checkpoint with real calibration, and the real server's process.

The checkpoint is an AE-SSIM at 32 px with random weights: no training, but its calibration is
measured like a run's (scores of held-out "normal" images: smooth grey gradients), so noisy
images score above the threshold and smooth ones below it.
"""

from __future__ import annotations

import io
import os
import socket
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
from helpers.calibration import held_out_calibration

REPO_ROOT = Path(__file__).resolve().parents[2]
# the test server's limits: small, so every limit can be crossed with small requests
MAX_UPLOAD_MB = 1
MAX_IMAGE_PIXELS = 1_000_000
MAX_BATCH_FILES = 3


def encoded_image(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """An image in [0, 1] as the bytes of a file, as a client uploads it."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(array, 0, 1) * 255).round().astype(np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def normal_images(count: int, size: int = 32, seed: int = 0) -> np.ndarray:
    """(N, S, S, 3) float32: smooth gradients, what the tiny model calls normal."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    out = []
    for _ in range(count):
        a, b, c = rng.uniform(0.2, 0.5, 3)
        grey = c + a * ramp[None, :] * 0.3 + b * ramp[:, None] * 0.3
        out.append(np.repeat(grey[..., None], 3, axis=2))
    return np.stack(out).astype(np.float32)


def noisy_image(size: int = 32, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 1, (size, size, 3)).astype(np.float32)


@torch.no_grad()
def make_checkpoint(directory: Path, class_names: list[str], calibrate: bool = True) -> Path:
    torch.manual_seed(0)
    cfg = load_config(None, ["--model.name", "ae_ssim", "--data.image_size", "32",
                             "--model.base_channels", "8", "--model.latent_dim", "16"])
    model = create_model(cfg.model_name, cfg.model, cfg.data.image_size, len(class_names)).eval()
    calibration = None
    if calibrate:
        held_out = torch.from_numpy(normal_images(8)).permute(0, 3, 1, 2)
        out = model.predict(held_out, torch.zeros(8, dtype=torch.long))
        scores, maps = out.image_score.numpy(), out.anomaly_map.numpy()
        calibration = held_out_calibration(scores, maps, pixel_rate=0.001)
    return save_checkpoint(directory, model, cfg, class_names, calibration=calibration)


@torch.no_grad()
def make_patchcore_checkpoint(directory: Path, size: int = 64, extra: tuple[str, ...] = ()) -> Path:
    """A PatchCore on a randomly initialised MobileNetV2 (no weights to install) with a real bank and calibration:
    fitted on smooth gradients, calibrated on others, so noise is flagged. A model that can take parts in."""
    torch.manual_seed(0)
    cfg = load_config(None, ["--model.name", "patchcore", "--data.image_size", str(size),
                             "--model.backbone.pretrained", "false", "--model.coreset_ratio", "0.5", *extra])
    model = create_model(cfg.model_name, cfg.model, cfg.data.image_size, 1)
    (phase,) = model.phases()
    train = torch.from_numpy(normal_images(8, size, seed=5)).permute(0, 3, 1, 2)
    model.collect(train, torch.zeros(8, dtype=torch.long), phase.name)
    model.finish_collection(phase.name)
    model.eval()
    held_out = torch.from_numpy(normal_images(8, size, seed=6)).permute(0, 3, 1, 2)
    out = model.predict(held_out, torch.zeros(8, dtype=torch.long))
    calibration = held_out_calibration(out.image_score.numpy(), out.anomaly_map.numpy(), pixel_rate=0.001)
    return save_checkpoint(directory, model, cfg, ["normal"], calibration=calibration)


def needs_serve_extra() -> None:
    """Skip the calling test where the `serve` extra (or httpx, the tests' client) is not installed."""
    import pytest

    for module in ("httpx", "fastapi", "uvicorn", "python_multipart"):
        pytest.importorskip(module)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_env() -> dict[str, str]:
    """This checkout's sources first, whatever the venv's editable install points at."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT / "src"), env.get("PYTHONPATH")) if p)
    return env


class Server:
    def __init__(self, process: subprocess.Popen, url: str, log: Path) -> None:
        self.process, self.url, self.log = process, url, log

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]

    def rss_mib(self) -> float:
        """The server process's resident memory now (Linux: VmRSS in /proc)."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS line")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=20)


def start_server(checkpoint: Path, log: Path, *flags: str, timeout: float = 120) -> Server:
    """`python -m defectscope serve CHECKPOINT FLAGS` on a free 127.0.0.1 port, once it answers /health.

    RuntimeError with the server's log when it exits or stays silent for `timeout` seconds.
    """
    import httpx

    port = free_port()
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "defectscope", "serve", str(checkpoint), "--host", "127.0.0.1", "--port", str(port),
             "--log-level", "warning", *flags],
            stdout=sink, stderr=subprocess.STDOUT, env=serve_env(), cwd=REPO_ROOT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.stop()
            raise RuntimeError(f"the server did not answer /health within {timeout:g} s:\n{server.log_tail()}")
        time.sleep(0.2)
