"""PatchCore and PaDiM through the benchmark harness and the HTML report (no weights file needed)."""

import json

from defectscope.benchmark import load_suite, run_suite
from defectscope.benchmark.runner import CELL_JSON
from helpers.benchmarks import REPO_ROOT


def test_memory_models_run_as_benchmark_cells_and_get_a_report(tmp_path, mvtec_root):
    for name, extra in (("patchcore", "coreset_chunk: 300"), ("padim", "n_features: 16")):
        (tmp_path / f"{name}.yaml").write_text(f"""
model: {{name: {name}, backbone: {{pretrained: false}}, {extra}}}
data: {{image_size: 32, batch_size: 4, eval_batch_size: 8}}
train: {{progress: false, accelerator: cpu}}
""")
    suite_file = tmp_path / "suite.yaml"
    suite_file.write_text(f"""
name: memory
models:
  patchcore: {{config: patchcore.yaml}}
  padim: {{config: padim.yaml}}
datasets:
  syn:
    reported_as: mvtec
    sources:
      - {{layout: mvtec, root: '{mvtec_root}', category: widget}}
      - {{layout: mvtec, root: '{mvtec_root}', category: gadget}}
settings: [multi_class]
seeds: [0]
profile: {{batch_sizes: [1, 4], warmup: 1, iterations: 1}}
gallery_per_end: 1
reported: [patchcore, padim]
reported_dir: '{REPO_ROOT / "benchmarks" / "reported"}'
""")
    out = tmp_path / "out"
    run = run_suite(load_suite(suite_file), out, log=lambda line: None)
    assert not run.failed, run.failed
    for model in ("patchcore", "padim"):
        cell = json.loads((out / "cells" / f"{model}.syn.multi_class.all.s0" / CELL_JSON).read_text())
        assert cell["train_steps"] > 0 and cell["images_per_second"]["4"] > 0
        assert 0 <= cell["mean"]["image_auroc"] <= 1
    results = json.loads((out / "results.json").read_text())
    assert {r["model"] for r in results["reported"]} >= {"patchcore", "padim"}  # the PVQAE paper's Table I

    from defectscope.report.build import build_report

    assert build_report(out / "cells" / "patchcore.syn.multi_class.all.s0").is_file()
    assert build_report(out).is_file()
