"""Serve fixtures: a tiny untrained checkpoint (helpers/serving.py) and the real server, started once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.serving import (
    MAX_BATCH_FILES,
    MAX_IMAGE_PIXELS,
    MAX_UPLOAD_MB,
    make_checkpoint,
    needs_serve_extra,
    start_server,
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
    needs_serve_extra()
    log = tmp_path_factory.mktemp("server") / "server.log"
    try:
        server = start_server(tiny_checkpoint, log, "--max-upload-mb", str(MAX_UPLOAD_MB),
                              "--max-image-pixels", str(MAX_IMAGE_PIXELS), "--max-batch-files", str(MAX_BATCH_FILES),
                              "--concurrent-calls", "2")  # the model's calls side by side, as a busy line runs it
    except RuntimeError as err:
        pytest.fail(str(err))
    yield server
    server.stop()
