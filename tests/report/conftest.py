"""The report tests' predict folder: a real predict run of a tiny checkpoint, made once."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectscope.cli.main import main
from helpers.serving import make_checkpoint, noisy_image, normal_images


def save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="session")
def predicted(tmp_path_factory) -> Path:
    """3 noisy parts (flagged), 4 smooth ones (passed), a truncated PNG, a FIFO and one mask, predicted."""
    root = tmp_path_factory.mktemp("predict_report")
    checkpoint = make_checkpoint(root / "ckpt", ["widget"])
    inputs = root / "in"
    for i in range(3):
        save(inputs / f"noisy{i}.png", noisy_image(32, seed=i))
    for i in range(4):
        save(inputs / f"smooth{i}.jpg", normal_images(1, seed=10 + i)[0])
    broken = save(inputs / "broken.png", normal_images(1)[0])
    broken.write_bytes(broken.read_bytes()[:60])
    os.mkfifo(inputs / "pipe.png")
    save(inputs / "smooth0_mask.png", np.zeros((32, 32, 3), np.float32))
    out = root / "out"
    assert main(["predict", str(checkpoint), str(inputs), "--output", str(out)]) == 1  # two inputs failed
    return out
