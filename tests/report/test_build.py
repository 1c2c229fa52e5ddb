"""The HTML report: every section drawn, every figure an embedded PNG, nothing fetched from outside."""

import base64
import io
import json
import re
import shutil

import pytest
from PIL import Image

from defectscope.benchmark import load_suite, write_results
from defectscope.report.build import build_report
from defectscope.report.errors import ReportError
from helpers.benchmarks import SMOKE_SUITE

PVQAE_CELL = "pvqae.mtsd.multi_class.all.s0"


def images(text):
    return re.findall(r'<img [^>]*src="([^"]*)"', text)


def decode_all(text):
    decoded = []
    for src in images(text):
        assert src.startswith("data:image/png;base64,")
        decoded.append(Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))))
    return decoded


@pytest.fixture(scope="module")
def run_report(smoke_benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "run.html"
    return build_report(smoke_benchmark / "cells" / PVQAE_CELL, out).read_text()


def test_a_run_report_has_every_section_as_embedded_pngs(run_report):
    for heading in ("Metrics", "Thresholds: promised vs measured false alarms",
                    "ROC and PRO curves", "Score histograms", "Training loss",
                    "Most and least anomalous test images", "Model maps"):
        assert f">{heading}</h2>" in run_report
    pictures = decode_all(run_report)
    assert len(pictures) == 5  # curves, histogram, loss, most and least anomalous
    assert all(p.size[0] > 300 and p.size[1] > 150 for p in pictures)
    assert "Not shown" not in run_report


def test_the_report_opens_offline(run_report):
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', run_report)
    assert "<link" not in run_report and "@import" not in run_report


def test_model_maps_from_explain_maps_are_named(run_report):
    assert "code level (dynamic)" in run_report and "explain_maps" in run_report


def test_a_run_without_artifacts_says_what_is_missing(smoke_benchmark, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(smoke_benchmark / "cells" / "ae_ssim.mtsd.multi_class.all.s0", run)
    for name in ("curves.json", "scores.csv", "train_log.jsonl"):
        (run / name).unlink()
    shutil.rmtree(run / "gallery")
    results = json.loads((run / "results.json").read_text())
    results["checkpoint"] = None
    (run / "results.json").write_text(json.dumps(results))
    text = build_report(run).read_text()
    assert (run / "report.html").is_file()
    assert ">Not shown</h2>" in text and "curves.json" in text and "gallery/" in text and "train_log.jsonl" in text
    assert images(text) == []


def test_a_rescored_run_finds_its_training_log_through_the_checkpoint(smoke_benchmark, tmp_path):
    cell = smoke_benchmark / "cells" / "ae_ssim.mtsd.multi_class.all.s0"
    elsewhere = tmp_path / "rescored"
    shutil.copytree(cell, elsewhere, ignore=shutil.ignore_patterns("train_log.jsonl", "checkpoints"))
    text = build_report(elsewhere).read_text()  # results.json still names the cell's checkpoint
    assert ">Training loss</h2>" in text


def test_a_standardised_run_says_so_and_a_plain_one_does_not(smoke_benchmark, run_report, tmp_path):
    run = tmp_path / "standardised"
    shutil.copytree(smoke_benchmark / "cells" / "ae_ssim.mtsd.multi_class.all.s0", run,
                    ignore=shutil.ignore_patterns("checkpoints"))
    results = json.loads((run / "results.json").read_text())
    results["map_standardization"] = "position"
    (run / "results.json").write_text(json.dumps(results))
    assert "z-scored per position" in build_report(run).read_text()
    assert "z-scored per position" not in run_report


def test_a_benchmark_report_has_the_tables_and_every_finished_cell(smoke_benchmark, tmp_path):
    out = tmp_path / "bench"
    keep = ["ae_ssim.mtsd.multi_class.all.s0", PVQAE_CELL]
    shutil.copytree(smoke_benchmark, out, ignore=lambda d, names: [n for n in names if d.endswith("cells")
                                                                    and n not in keep])
    write_results(load_suite(SMOKE_SUITE), out)  # as after an interrupted run: two of eight cells
    text = build_report(out).read_text()
    assert "2 of 8 cells finished" in text and "mtsd · multi_class · Image AUROC (%)" in text
    assert 'class="reported"' in text and "AE-SSIM (reported: PVQAE paper, Table I) †" in text
    assert [f"Cell {c}" in text for c in keep] == [True, True] and "Cell vq_e" not in text
    assert len(decode_all(text)) == 2 * 5  # per cell: curves, histogram, loss, most and least anomalous


def test_a_folder_without_results_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match=str(tmp_path)):
        build_report(tmp_path)
