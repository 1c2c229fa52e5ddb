"""A suite with `profile.onnxruntime: true` reports onnxruntime images/s beside torch's, from the same run."""

from __future__ import annotations

import json

import pytest

from defectscope.benchmark import load_suite, run_suite
from defectscope.benchmark.profile import onnxruntime_images_per_second
from defectscope.benchmark.runner import CELL_JSON

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def test_profile_times_the_exported_graph(standardised):
    speed = onnxruntime_images_per_second(standardised.path, 32, batch=2, warmup=1, iterations=2, threads=1)
    assert speed > 0


def test_suite_cell_reports_onnxruntime_beside_torch(tmp_path, mvtec_root):
    (tmp_path / "ae.yaml").write_text("""
model: {name: ae_ssim, base_channels: 8, latent_dim: 16}
data: {image_size: 32, batch_size: 4, eval_batch_size: 8}
train: {max_steps: 1, log_every: 1, progress: false, accelerator: cpu}
""")
    (tmp_path / "suite.yaml").write_text(f"""
name: tiny_onnx
models:
  ae: {{config: ae.yaml}}
datasets:
  syn:
    sources:
      - {{layout: mvtec, root: '{mvtec_root}', category: widget}}
settings: [multi_class]
seeds: [0]
profile: {{batch_sizes: [1, 2], warmup: 1, iterations: 1, flops: false, onnxruntime: true}}
gallery_per_end: 1
reported: []
""")
    run = run_suite(load_suite(tmp_path / "suite.yaml"), tmp_path / "out", log=lambda line: None)
    assert not run.failed and len(run.ran) == 1
    cell = json.loads((tmp_path / "out" / "cells" / run.ran[0] / CELL_JSON).read_text())
    assert set(cell["onnxruntime_images_per_second"]) == set(cell["images_per_second"]) == {"1", "2"}
    assert all(v > 0 for v in cell["onnxruntime_images_per_second"].values())
    assert "onnxruntime images/s, batch 2" in (tmp_path / "out" / "results.md").read_text()
