"""`defectscope benchmark` and `defectscope report` from the command line."""

import json
import shutil

from defectscope.cli.main import main
from helpers.benchmarks import SMOKE_SUITE


def test_benchmark_runs_resumes_and_reports(smoke_benchmark, tmp_path, capsys):
    out = tmp_path / "smoke"
    done = "ae_ssim.mtsd.multi_class.all.s0"
    shutil.copytree(smoke_benchmark, out, ignore=lambda d, names: [n for n in names if d.endswith("cells")
                                                                    and n != done])
    assert main(["benchmark", str(SMOKE_SUITE), "--output", str(out), "--only", "*.multi_class.*",
                 "--only", "nothing", "--report"]) == 0
    printed = capsys.readouterr().out
    assert f"{done}: finished, skipped" in printed and "vq_e.mtsd.multi_class.all.s0: running" in printed
    assert "ran 3, skipped 1 finished" in printed and "4 of 8 cells finished" in printed  # 4 models
    assert str(out / "results.md") in printed and (out / "report.html").is_file()
    assert "differs from the suite" not in printed  # a moved output folder does not make cells stale
    assert len(json.loads((out / "results.json").read_text())["pending"]) == 4


def test_benchmark_dry_run_lists_cells_and_takes_overrides(tmp_path, capsys):
    out = tmp_path / "none"
    assert main(["benchmark", str(SMOKE_SUITE), "--output", str(out), "--dry-run", "--only", "pvqae.*",
                 "--train.max_steps", "1"]) == 0
    printed = capsys.readouterr().out
    assert "pvqae.mtsd.multi_class.all.s0: would run" in printed and "2 of 2 selected cells would run" in printed
    assert "ae_ssim" not in printed and not out.exists()


def test_benchmark_errors_name_the_key_and_the_file(tmp_path, capsys):
    assert main(["benchmark", str(SMOKE_SUITE), "--output", str(tmp_path), "--dry-run", "--train.epochz", "1"]) == 2
    err = capsys.readouterr().err
    assert "train.epochz" in err and str(SMOKE_SUITE) in err and "Traceback" not in err


def test_report_writes_one_html_file(smoke_benchmark, tmp_path, capsys):
    target = tmp_path / "r.html"
    assert main(["report", str(smoke_benchmark / "cells" / "ae_ssim.mtsd.multi_class.all.s0"),
                 "--output", str(target)]) == 0
    assert str(target) in capsys.readouterr().out and target.read_text().startswith("<!DOCTYPE html>")
    assert main(["report", str(tmp_path / "nothing")]) == 2
    assert "no results.json" in capsys.readouterr().err
