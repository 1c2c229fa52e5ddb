"""`defectscope predict MODEL.onnx ... --backend onnxruntime` and `defectscope serve MODEL.onnx` without torch.

The model is exported here (with torch, in this process); each command then runs in a subprocess
whose Python answers every torch import with ModuleNotFoundError (helpers/torch_free.py).
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectscope.data.image_io import load_image_array
from helpers.exporting import Exported, export
from helpers.serving import REPO_ROOT, free_port, noisy_image, normal_images
from helpers.torch_free import torch_free_env

TIMEOUT = 120  # seconds for one command, or for the server to answer /health


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """AE-SSIM at 32 px, one class, calibrated, exported to ONNX."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return export("ae_ssim", tmp_path_factory.mktemp("torch_free"), 32, ("widget",))


def run_without_torch(args: list[str], folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=TIMEOUT,
                          env=torch_free_env(folder / "no_torch"), cwd=REPO_ROOT)


def png(image: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray((image * 255).round().astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_the_subprocess_really_cannot_import_torch(tmp_path):
    proc = run_without_torch(["-c", "import torch"], tmp_path)
    assert proc.returncode != 0 and "blocked by the torch-free test" in proc.stderr


def test_the_command_line_and_the_torch_free_paths_import_without_torch(tmp_path):
    pytest.importorskip("fastapi")
    code = ("from defectscope.cli.main import build_parser; build_parser(); "
            "import defectscope.predict.job, defectscope.serve.app, defectscope.export.runtime")
    proc = run_without_torch(["-c", code], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_predict_with_onnxruntime_needs_no_torch(exported, tmp_path):
    """An .onnx model runs in onnxruntime without --backend (auto), and says which runtime and threads."""
    images = {"a/normal.png": normal_images(1, seed=3)[0], "a/noisy.png": noisy_image(32, 5),
              "b/wide.png": normal_images(1, size=48, seed=4)[0][:32]}
    for name, image in images.items():
        (tmp_path / "in" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "in" / name).write_bytes(png(image))
    out = tmp_path / "out"
    proc = run_without_torch(["-m", "defectscope", "predict", str(exported.path), str(tmp_path / "in"),
                              "--threads", "1", "--output", str(out)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "scoring 3 images with onnxruntime (1 threads, batch 8" in proc.stdout
    header = json.loads((out / "scores.json").read_text())
    assert (header["backend"], header["threads"]) == ("onnxruntime", 1)
    with (out / "scores.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    paths = [tmp_path / "in" / name for name in sorted(images)]
    assert [r["path"] for r in rows] == [str(p) for p in paths] and not any(r["error"] for r in rows)
    expected = exported.onnx.score([load_image_array(p) for p in paths])  # the same model, in this process
    for row, det in zip(rows, expected, strict=True):
        assert float(row["score"]) == pytest.approx(det.score, rel=1e-5, abs=1e-6)
        assert row["verdict"] == ("DEFECT" if det.defective else "OK")
        assert (out / "maps" / row["map"]).is_file()


def test_serve_an_exported_model_needs_no_torch(exported, tmp_path):
    httpx = pytest.importorskip("httpx")
    for module in ("fastapi", "uvicorn", "python_multipart"):
        pytest.importorskip(module)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "defectscope", "serve", str(exported.path), "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            stdout=sink, stderr=subprocess.STDOUT, env=torch_free_env(tmp_path / "no_torch"), cwd=REPO_ROOT,
        )
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            assert process.poll() is None, f"the server exited with {process.returncode}:\n{log.read_text()[-3000:]}"
            try:
                if httpx.get(url + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"no answer on /health in {TIMEOUT} s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        image = noisy_image(32, 7)
        data = png(image)
        response = httpx.post(url + "/predict", files={"file": ("noisy.png", data, "image/png")}, timeout=TIMEOUT)
        assert response.status_code == 200, response.text
        body = response.json()
        decoded = np.asarray(Image.open(io.BytesIO(data)), np.float32) / 255
        expected = exported.onnx.score([decoded])[0]
        assert body["score"] == pytest.approx(expected.score, rel=1e-5, abs=1e-6)
        assert body["verdict"] == ("DEFECT" if expected.defective else "OK")
        assert httpx.get(url + "/health", timeout=10).json()["images_scored"] == 1
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)
