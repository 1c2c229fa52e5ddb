"""The page of a predict folder, built from a real predict run of a tiny checkpoint: the promise and
counts first, flagged parts by normalised score, passed ones folded, failures with their reasons."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

from defectscope.cli.main import main
from defectscope.report.build import build_report
from helpers.serving import REPO_ROOT
from helpers.torch_free import torch_free_env


def rows_of(out: Path) -> list[dict[str, str]]:
    with (out / "scores.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def section(text: str, start: str, end: str | None) -> str:
    body = text[text.index(f"id={start}>"):]
    return body[:body.index(f"id={end}>")] if end else body


def paths_in(text: str) -> list[str]:
    return [html.unescape(p) for p in re.findall(r"<code>([^<]*)</code>", text)]


def pictures(text: str) -> list[Image.Image]:
    found = re.findall(r'<img [^>]*src="data:image/jpeg;base64,([^"]*)"', text)
    return [Image.open(io.BytesIO(base64.b64decode(data))) for data in found]


def test_the_page_states_the_promise_and_counts_before_any_part(predicted, capsys):
    assert main(["report", str(predicted)]) == 0
    assert f"report: {predicted / 'report.html'}" in capsys.readouterr().out
    text = (predicted / "report.html").read_text()
    header = json.loads((predicted / "scores.json").read_text())
    promise = (f"a good part like the <b>{header['held_out_normals']}</b> held-out good parts is flagged with "
               f"probability at most <b>{100 * header['false_alarm_bound']:.3g} %</b>")
    assert promise in text and f"stated false-alarm rate of <b>{100 * header['false_alarm_rate']:.3g} %" in text
    counts = re.search(r"<table class=counts>.*?</table>", text).group(0)
    cells = [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td>(.*?)</td>", counts)]
    assert cells[:4] == ["9", "7", "3 (42.9 % of those scored)", "4"] and cells[-2:] == ["2", "1"]
    assert text.index(promise) < text.index("id=flagged>") < text.index("id=passed>") < text.index("id=failed>")
    assert "pixel threshold" in text and "linear-gradient" in text  # the colour legend


def test_flagged_parts_come_first_by_normalised_score_with_pictures(predicted):
    text = build_report(predicted).read_text()  # the library entry point makes the same page
    rows = rows_of(predicted)
    flagged = sorted((r for r in rows if r["verdict"] == "DEFECT"), key=lambda r: -float(r["normalized_score"]))
    passed = sorted((r for r in rows if r["verdict"] == "OK"), key=lambda r: -float(r["normalized_score"]))
    assert sorted(Path(r["path"]).name for r in flagged) == ["noisy0.png", "noisy1.png", "noisy2.png"]
    assert paths_in(section(text, "flagged", "passed")) == [r["path"] for r in flagged]
    passed_part = section(text, "passed", "failed")
    assert "<details>" in passed_part and paths_in(passed_part) == [r["path"] for r in passed]
    assert "#1 <span class=defect>DEFECT</span>" in text
    shown = pictures(text)
    assert len(shown) == 7 and all(p.format == "JPEG" for p in shown)
    assert max(p.width for p in shown) <= 540 and shown[0].height > 160  # the input, its heatmap and its scale
    assert not re.search(r'(src|href)\s*=\s*["\']?(https?:)?//', text) and "<link" not in text


def test_failed_inputs_and_skipped_masks_are_named_with_their_reasons(predicted):
    failed = section(build_report(predicted).read_text(), "failed", None)
    assert "Could not be scored: 2" in failed
    assert str(predicted.parent / "in" / "broken.png") in failed and str(predicted.parent / "in" / "pipe.png") in failed
    assert "named pipe (FIFO)" in failed and "Ground-truth files skipped: 1" in failed
    assert str(predicted.parent / "in" / "smooth0_mask.png") in failed


def test_max_images_caps_the_pictures_flagged_first_and_lists_the_rest(predicted, tmp_path):
    page = tmp_path / "small.html"
    assert main(["report", str(predicted), "--output", str(page), "--max-images", "2"]) == 0
    text = page.read_text()
    assert len(pictures(text)) == 2 and len(pictures(section(text, "flagged", "passed"))) == 2
    assert "Pictures for the first 2 of 3" in text and "--max-images" in text
    passed = section(text, "passed", "failed")
    assert pictures(passed) == [] and "cap (<code>--max-images</code>) went to the parts above" in passed
    assert passed.count("<tr><td>") == 4  # past the cap: a table row each, no picture
    assert not (predicted / "report.html").read_text() == text


def test_a_predict_run_without_maps_still_makes_a_page(predicted, tmp_path, monkeypatch):
    out = tmp_path / "no_maps"
    out.mkdir()
    data = json.loads((predicted / "scores.json").read_text())
    for row in data["images"]:
        row["map"] = None
    (out / "scores.json").write_text(json.dumps(data))
    text = build_report(out).read_text()
    assert "--no-maps" in text and pictures(text) == [] and "Flagged DEFECT: 3" in text


def test_max_images_is_refused_for_a_run_folder(tmp_path, capsys):
    (tmp_path / "results.json").write_text("{}")
    assert main(["report", str(tmp_path), "--max-images", "3"]) == 2
    assert "--max-images applies to a predict folder" in capsys.readouterr().err


def test_the_page_of_a_predict_folder_needs_no_torch(predicted, tmp_path):
    """A line PC that predicts with onnxruntime, without torch, can make the page too."""
    page = tmp_path / "no_torch.html"
    proc = subprocess.run([sys.executable, "-m", "defectscope", "report", str(predicted), "--output", str(page)],
                          capture_output=True, text=True, timeout=120, env=torch_free_env(tmp_path / "no_torch"),
                          cwd=REPO_ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Flagged DEFECT: 3" in page.read_text()
