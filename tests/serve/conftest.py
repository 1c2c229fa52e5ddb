"""Serve fixtures: a tiny untrained checkpoint (helpers/serving.py) and the real server, started once per session."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.serving import (
    MAX_BATCH_FILES,
    MAX_IMAGE_PIXELS,
    MAX_UPLOAD_MB,
    REPO_ROOT,
    Server,
    free_port,
    make_checkpoint,
    serve_env,
)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt", ["widget"])


@pytest.fixture(scope="session")
def two_class_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_checkpoint(tmp_path_factory.mktemp("serve") / "ckpt2", ["widget", "gadget"])


@pytest.fixture(scope="session")
def server(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    """`python -m defectscope serve` as a subprocess on a free 127.0.0.1 port, up until the session ends."""
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    pytest.importorskip("python_multipart")
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "defectscope", "serve", str(tiny_checkpoint), "--host", "127.0.0.1",
             "--port", str(port), "--max-upload-mb", str(MAX_UPLOAD_MB), "--max-image-pixels", str(MAX_IMAGE_PIXELS),
             "--max-batch-files", str(MAX_BATCH_FILES), "--log-level", "warning"],
            stdout=sink, stderr=subprocess.STDOUT, env=serve_env(), cwd=REPO_ROOT,
        )
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + 120
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{server.log_tail()}")
        try:
            if httpx.get(server.url + "/health", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the server did not answer /health within 120 s:\n{server.log_tail()}")
        time.sleep(0.2)
    yield server
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
