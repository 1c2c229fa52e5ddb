"""Running suites: every cell measured, resumable, failures contained, results rebuilt from cells."""

import json

import pytest

from defectscope.benchmark import load_suite, run_suite
from defectscope.benchmark.runner import CELL_JSON
from defectscope.data import DataError
from helpers.benchmarks import REPO_ROOT

CELL_FIELDS = {
    "categories", "mean", "train_seconds", "train_steps", "images_per_second", "peak_rss_mib", "parameters",
    "checkpoint_bytes", "flops_per_image", "environment", "calibration", "num_test_images",
}
MODEL = """
model: {name: ae_ssim, base_channels: 8, latent_dim: 16}
data: {image_size: 32, batch_size: 4, eval_batch_size: 8}
train: {max_steps: 1, log_every: 1, progress: false, accelerator: cpu}
"""


def make_suite(tmp_path, root, extra_source=""):
    (tmp_path / "ae.yaml").write_text(MODEL)
    path = tmp_path / "suite.yaml"
    path.write_text(f"""
name: tiny
models:
  ae: {{config: ae.yaml, label: AE-SSIM (ours)}}
datasets:
  syn:
    reported_as: mvtec
    sources:
      - {{layout: mvtec, root: '{root}', category: widget}}
      - {{layout: mvtec, root: '{root}', category: gadget}}
      {extra_source}
settings: [single_class, multi_class]
seeds: [0]
profile: {{batch_sizes: [1, 4], warmup: 1, iterations: 1}}
gallery_per_end: 1
reported: [ae_ssim]
reported_dir: '{REPO_ROOT / "benchmarks" / "reported"}'
""")
    return load_suite(path)


@pytest.fixture(scope="module")
def finished(tmp_path_factory, mvtec_root):
    tmp = tmp_path_factory.mktemp("runner")
    suite = make_suite(tmp, mvtec_root)
    lines = []
    run = run_suite(suite, tmp / "out", log=lines.append)
    return suite, tmp / "out", run, lines


def cell_json(out, cell_id):
    return json.loads((out / "cells" / cell_id / CELL_JSON).read_text())


def test_every_cell_is_trained_evaluated_and_profiled(finished):
    suite, out, run, lines = finished
    assert run.ran == ["ae.syn.single_class.widget.s0", "ae.syn.single_class.gadget.s0", "ae.syn.multi_class.all.s0"]
    for cell_id in run.ran:
        record = cell_json(out, cell_id)
        assert CELL_FIELDS <= set(record)
        assert set(record["images_per_second"]) == {"1", "4"} and min(record["images_per_second"].values()) > 0
        assert record["parameters"] > 0 and record["checkpoint_bytes"] > 0 and record["flops_per_image"] > 0
        assert record["peak_rss_mib"] > 0 and record["train_steps"] == 1
        assert {"device_name", "torch", "commit"} <= set(record["environment"])
        assert (out / "cells" / cell_id / "curves.json").is_file()
    assert set(cell_json(out, "ae.syn.multi_class.all.s0")["categories"]) == {"widget", "gadget"}
    assert set(cell_json(out, "ae.syn.single_class.gadget.s0")["categories"]) == {"gadget"}
    assert any("done in" in line for line in lines)


def test_results_are_rebuilt_from_the_cells(finished):
    _, out, run, _ = finished
    results = json.loads((out / "results.json").read_text())
    assert [c["cell"]["id"] for c in results["cells"]] == run.ran and results["pending"] == []
    table = (out / "results.md").read_text()
    assert "### syn · single_class · Image AUROC (%)" in table and "### syn · multi_class · cost" in table
    assert "| category | AE-SSIM (ours) |" in table
    assert "| **mean** |" in table
    # synthetic categories have no reported numbers, but the mvtec ones were selected
    assert any(s["dataset"] == "mvtec" and s["model"] == "ae_ssim" for s in results["reported"])


def test_a_rerun_skips_finished_cells_and_redoes_an_interrupted_one(finished, tmp_path, mvtec_root):
    suite, out, _, _ = finished
    work = tmp_path / "out"
    import shutil

    shutil.copytree(out, work)
    kept = work / "cells" / "ae.syn.single_class.widget.s0" / CELL_JSON
    before = kept.stat().st_mtime_ns
    crashed = work / "cells" / "ae.syn.multi_class.all.s0"
    (crashed / CELL_JSON).unlink()  # as if killed before the end of the cell
    (crashed / "half-written").write_text("x")
    run = run_suite(suite, work, log=lambda line: None)
    assert run.ran == ["ae.syn.multi_class.all.s0"] and len(run.skipped) == 2
    assert kept.stat().st_mtime_ns == before
    assert (crashed / CELL_JSON).is_file() and not (crashed / "half-written").exists()
    assert json.loads((work / "results.json").read_text())["pending"] == []


def test_dry_run_and_only_run_nothing(finished, tmp_path):
    suite, _, _, _ = finished
    lines = []
    run = run_suite(suite, tmp_path / "fresh", only=["*.single_class.*"], dry_run=True, log=lines.append)
    assert run.pending == ["ae.syn.single_class.widget.s0", "ae.syn.single_class.gadget.s0"]
    assert not (tmp_path / "fresh").exists() and all("would run" in line for line in lines)


def test_a_changed_config_marks_finished_cells_stale(finished, tmp_path):
    suite, out, _, _ = finished
    changed = load_suite(suite.path, {"train": {"lr": 0.01}})
    run = run_suite(changed, out, only=["*widget*"], dry_run=True, log=lambda line: None)
    assert run.stale == ["ae.syn.single_class.widget.s0"]


def test_a_failing_cell_stops_the_run_or_with_keep_going_is_recorded_and_retried(tmp_path, mvtec_root):
    missing = "- {layout: mvtec, root: '" + str(tmp_path / "nowhere") + "', category: lost}"
    suite = make_suite(tmp_path, mvtec_root, missing)
    out = tmp_path / "out"
    with pytest.raises(DataError, match="nowhere"):
        run_suite(suite, out, only=["*lost*"], log=lambda line: None)
    run = run_suite(suite, out, only=["*single_class.lost*", "*widget*"], keep_going=True, log=lambda line: None)
    assert list(run.failed) == ["ae.syn.single_class.lost.s0"] and run.ran == ["ae.syn.single_class.widget.s0"]
    assert "nowhere" in (out / "cells" / "ae.syn.single_class.lost.s0" / "error.txt").read_text()
    results = json.loads((out / "results.json").read_text())
    assert "ae.syn.single_class.lost.s0" in results["pending"]
    again = run_suite(suite, out, only=["*single_class.lost*"], keep_going=True, log=lambda line: None)
    assert list(again.failed) == ["ae.syn.single_class.lost.s0"]  # retried, not skipped


def test_the_shipped_smoke_suite_finishes_every_cell(smoke_benchmark):
    results = json.loads((smoke_benchmark / "results.json").read_text())
    assert results["cells_total"] == len(results["cells"]) == 8
    assert {c["cell"]["model"] for c in results["cells"]} == {"ae_ssim", "vq_e", "pvqae", "mean_image"}
    table = (smoke_benchmark / "results.md").read_text()
    assert "AE-SSIM (reported: PVQAE paper, Table I) †" in table and "*89.2*" in table
