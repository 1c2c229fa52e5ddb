"""A new user's first hour: `fit GOOD_DIR` → `threshold` → `predict` → `serve`, as commands, with no YAML.

The model is PaDiM on a randomly initialised backbone (no weights to install) over the demo's good
tiles: the chain, the promise and the files are what is tested, not the accuracy.
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from defectscope.cli.main import main
from defectscope.engine.calibrate import HELD_OUT_SCORES, HeldOutScores
from defectscope.engine.checkpoint import load_checkpoint
from defectscope.geometry import as_hw
from defectscope.scoring.calibration import conformal_threshold
from helpers.runs import demo_good_folder
from helpers.serving import REPO_ROOT, free_port, serve_env

DEMO = REPO_ROOT / "demo" / "mtsd_demo"
RANDOM_BACKBONE = ["--model.backbone.pretrained", "false", "--data.image_size", "64"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("first_hour")
    good, bad = root / "good", root / "bad"
    good.mkdir()
    bad.mkdir()
    for path in sorted((DEMO / "MT_Free" / "Imgs").glob("*.jpg"))[:40]:
        shutil.copy(path, good)
    for path in sorted((DEMO / "MT_Break" / "Imgs").glob("*.jpg"))[:4]:
        shutil.copy(path, bad)
    return root


@pytest.fixture(scope="module")
def fitted(folders):
    run = folders / "run"
    assert main(["fit", str(folders / "good"), "--model", "padim", "--output", str(run),
                 "--defects", str(folders / "bad"), *RANDOM_BACKBONE]) == 0
    return run


def test_fit_names_the_good_parts_that_scored_highest(folders, tmp_path, capsys):
    """A defective part filed as good sets the threshold: fit lists the highest held-out good parts to look at."""
    good = tmp_path / "good"
    shutil.copytree(folders / "good", good)
    odd = sorted((DEMO / "MT_Break" / "Imgs").glob("*.jpg"))[-1]
    shutil.copy(odd, good / "filed_as_good.jpg")
    run = tmp_path / "run"
    assert main(["fit", str(good), "--model", "padim", "--output", str(run), *RANDOM_BACKBONE]) == 0
    out = capsys.readouterr().out
    assert "scored highest" in out and str(run / "held_out_scores.csv") in out
    with (run / "held_out_scores.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 41 and {Path(r["path"]).name for r in rows} == {p.name for p in good.iterdir()}
    shown = [line.split()[-1] for line in out.splitlines() if line.startswith("  ")][:5]
    assert shown == [r["path"] for r in rows[:5]]


def _held_out_csv(folder: Path, scores: list[float], classes: list[str] | None = None) -> None:
    """A run's held_out_scores.csv, written as calibration writes it."""
    paths = [f"/good/part_{i:04d}.png" for i in range(len(scores))]
    HeldOutScores(paths, classes or ["good"] * len(scores), np.array(scores)).write(folder / HELD_OUT_SCORES)


def test_fit_says_where_the_threshold_would_fall_without_the_parts_above_it(tmp_path):
    """The parts above the threshold are all listed, and the threshold the same rule gives without them is the
    one conformal_threshold computes on the other scores (n = 300 at 1 %: the 3rd highest, two above it)."""
    from defectscope.cli.fit import highest_good_lines

    rng = np.random.default_rng(0)
    scores = list(rng.normal(20, 3, 300) + rng.uniform(0, 1e-3, 300))
    _held_out_csv(tmp_path, scores)
    at = conformal_threshold(np.array(scores), 0.01)
    out = highest_good_lines(tmp_path, at.value, 0.01)
    ranked = sorted(scores, reverse=True)
    expected = conformal_threshold(np.array(ranked[2:]), 0.01).value
    assert at.value == pytest.approx(ranked[2])
    assert "3rd highest of 300" in out and "the 2 parts above it" in out
    assert f"fall to about {expected:.4g}" in out and expected < at.value

    many = list(rng.normal(20, 3, 1000) + rng.uniform(0, 1e-3, 1000))  # n = 1000: the 10th highest, 9 above it
    _held_out_csv(tmp_path, many)
    out = highest_good_lines(tmp_path, conformal_threshold(np.array(many), 0.01).value, 0.01)
    assert len([line for line in out.splitlines() if line.startswith("  ")]) == 10  # every part above, and its own
    assert "10th highest of 1000" in out and "the 9 parts above it" in out

    _held_out_csv(tmp_path, scores, ["a"] * 150 + ["b"] * 150)  # a threshold per class: no single what-if
    assert "fall to about" not in highest_good_lines(tmp_path, at.value, 0.01)
    assert "fall to about" not in highest_good_lines(tmp_path, max(scores), 0.01)  # nothing above a capped threshold


def test_fit_calibrates_on_every_good_part_and_writes_the_resolved_config(fitted, folders, capsys):
    ckpt = load_checkpoint(fitted)  # a run folder stands for its final checkpoint
    threshold = ckpt.calibration.image.threshold
    assert threshold.n == 40 and ckpt.config.eval.calibration.kind == "cross_fit"  # no image left out of either
    assert (fitted / "config.yaml").is_file() and "cross_fit" in (fitted / "config.yaml").read_text()
    assert not (fitted / "results.json").exists()  # no test split, so no test results


def test_fit_refuses_what_it_cannot_use(folders, tmp_path, capsys):
    assert main(["fit", str(tmp_path / "nowhere")]) == 2
    assert "not a folder of good images" in capsys.readouterr().err
    assert main(["fit", str(folders / "good"), "--model", "nope", "--output", str(tmp_path / "r")]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err


def test_threshold_moves_without_refitting_and_predict_shows_the_promise(fitted, folders, tmp_path, capsys):
    target = tmp_path / "moved"
    assert main(["threshold", str(fitted), "--false-alarm-rate", "0.2", "--output", str(target)]) == 0
    moved = load_checkpoint(target)
    stored = moved.calibration.image.held_out.scores
    assert moved.calibration.image.threshold == conformal_threshold(stored, 0.2)
    assert moved.config.eval.false_alarm_rate == 0.2
    assert load_checkpoint(fitted).calibration.image.threshold.false_alarm_rate == 0.01  # the run is untouched
    out = tmp_path / "predictions"
    assert main(["predict", str(target), str(folders / "bad"), "--output", str(out), "--no-maps"]) == 0
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert [float(r["threshold"]) for r in rows] == pytest.approx([moved.calibration.image.threshold.value] * 4)
    assert [float(r["false_alarm_bound"]) for r in rows] == pytest.approx([moved.calibration.image.threshold.bound] * 4)
    summary = json.loads((out / "scores.json").read_text())
    assert (summary["false_alarm_rate"], summary["held_out_normals"]) == (0.2, 40)
    # predict's own --false-alarm-rate moves it for one run, from the same held-out scores
    again = tmp_path / "again"
    assert main(["predict", str(fitted), str(folders / "bad"), "--output", str(again), "--no-maps",
                 "--false-alarm-rate", "0.2"]) == 0
    assert [r["verdict"] for r in csv.DictReader((again / "scores.csv").open())] == [r["verdict"] for r in rows]


def test_a_score_threshold_gets_the_promise_its_rank_gives(fitted, tmp_path):
    stored = load_checkpoint(fitted).calibration.image.held_out.scores
    assert main(["threshold", str(fitted), "--score", str(stored[29]), "--output", str(tmp_path / "s")]) == 0
    threshold = load_checkpoint(tmp_path / "s").calibration.image.threshold
    assert (threshold.rank, threshold.n) == (30, 40) and threshold.bound == pytest.approx(11 / 41)
    assert main(["threshold", str(fitted), f"--score={stored[0] - 1}", "--output", str(tmp_path / "t")]) == 2


def test_serve_answers_with_the_promise(fitted):
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("fastapi")
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "defectscope", "serve", str(fitted), "--port", str(port),
                                "--false-alarm-rate", "0.05", "--log-level", "warning"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=serve_env(), cwd=REPO_ROOT)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.stderr.read().decode()[-2000:]
            try:
                info = httpx.get(f"http://127.0.0.1:{port}/model", timeout=2)
                if info.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not answer within 120 s"
            time.sleep(0.3)
        body = info.json()
        assert (body["false_alarm_rate"], body["held_out_normals"]) == (0.05, 40)
        image = next((DEMO / "MT_Break" / "Imgs").glob("*.jpg")).read_bytes()
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", files={"file": ("part.jpg", image, "image/jpeg")},
                            timeout=60)
        assert answer.status_code == 200 and answer.json()["verdict"] in ("OK", "DEFECT")
    finally:
        process.terminate()
        process.wait(timeout=20)



@pytest.fixture(scope="module")
def many_good(tmp_path_factory):
    return demo_good_folder(tmp_path_factory.mktemp("many_good"))


def test_fit_chooses_the_patch_setting_from_the_good_parts(many_good, tmp_path, capsys):
    run = tmp_path / "chosen"
    # image_size as fit leaves it (auto), its pixel budget small for a quick test
    small_auto = ["--model.backbone.pretrained", "false", "--data.image_size", "{kind: auto, pixels: 4096}"]
    assert main(["fit", str(many_good), "--output", str(run), *small_auto]) == 0
    choice = json.loads((run / "feature_choice" / "choice.json").read_text())
    assert set(choice["found"]) == set(choice["settings"]) == {"shipped", "with_last", "first_three", "sparse_bank"}
    for name in choice["settings"]:  # every candidate is a real run, calibrated on its 10 held-out parts
        assert load_checkpoint(run / "feature_choice" / name).calibration.image.threshold.n == 10
    found = choice["found"]
    if choice["chosen"] != "shipped":  # a challenger replaces the shipped setting by a clear margin only
        assert found[choice["chosen"]]["caught"] >= found["shipped"]["caught"] + 1 / found["shipped"]["held_out"]
    candidate = load_checkpoint(run / "feature_choice" / choice["chosen"]).config
    shipped = load_checkpoint(run)
    assert shipped.config.model == candidate.model  # the run that ships has the chosen setting...
    assert shipped.config.eval.calibration.kind == "cross_fit"  # ...and still calibrates on every part
    # then the chosen setting on a working size 1.5× each way, on the same held-out parts
    finer = choice["finer_size"]
    assert finer["pixels"] == round(4096 * 2.25)
    finer_run = load_checkpoint(run / "feature_choice" / f"{choice['chosen']}_finer").config
    assert finer_run.model == candidate.model and list(as_hw(finer_run.data.image_size)) == finer["resolved"]
    assert finer["found"]["held_out"] == found[choice["chosen"]]["held_out"] == 10
    assert finer["chosen"] == (finer["found"]["caught"] >= found[choice["chosen"]]["caught"] + 1 / 10)
    # the shipped run is fitted at the size that won, resolved from the folder as every candidate was
    assert list(as_hw(shipped.config.data.image_size)) == (finer["resolved"] if finer["chosen"] else finer["base"])
    err = capsys.readouterr().err
    assert f"patch setting: {choice['chosen']}" in err and "working size" in err
    # a second run into the same folder is refused before any candidate is fitted again
    stamp = (run / "feature_choice" / "choice.json").stat().st_mtime_ns
    assert main(["fit", str(many_good), "--output", str(run), *small_auto]) == 2
    assert "already holds a finished run" in capsys.readouterr().err
    assert (run / "feature_choice" / "choice.json").stat().st_mtime_ns == stamp
    # --overwrite with a named setting leaves no earlier choice beside the new run
    assert main(["fit", str(many_good), "--output", str(run), "--features", "sparse_bank", "--overwrite",
                 *small_auto]) == 0
    assert not (run / "feature_choice").exists()


def test_a_working_size_the_user_gives_is_not_chosen_again(many_good, tmp_path, monkeypatch):
    from defectscope.engine import feature_choice

    fitted_sizes = []
    real = feature_choice.fit_and_ladder

    def spy(cfg, *args, **kwargs):
        fitted_sizes.append(cfg.data.image_size)
        return real(cfg, *args, **kwargs)

    monkeypatch.setattr(feature_choice, "fit_and_ladder", spy)
    run = tmp_path / "sized"
    assert main(["fit", str(many_good), "--output", str(run), "--model.backbone.pretrained", "false",
                 "--data.image_size", "[64, 96]"]) == 0
    choice = json.loads((run / "feature_choice" / "choice.json").read_text())
    assert choice["finer_size"] is None and fitted_sizes == [(64, 96)] * 4
    assert load_checkpoint(run).config.data.image_size == (64, 96)


def test_the_shipped_run_is_fitted_at_the_finer_size_where_it_won(many_good, tmp_path, monkeypatch, capsys):
    from defectscope.engine import feature_choice

    def finer_catches_more(cfg, model, holdout, bundle, output, overwrite):  # no candidate fitted: the decision only
        output.mkdir(parents=True)
        height, width = as_hw(cfg.data.image_size)
        return {"held_out": 10.0, "caught": 0.9 if height * width > 4096 else 0.5, "auroc": 0.9}

    monkeypatch.setattr(feature_choice, "fit_and_ladder", finer_catches_more)
    run = tmp_path / "finer"
    assert main(["fit", str(many_good), "--output", str(run), "--model.backbone.pretrained", "false",
                 "--data.image_size", "{kind: auto, pixels: 4096}"]) == 0
    finer = json.loads((run / "feature_choice" / "choice.json").read_text())["finer_size"]
    assert finer["chosen"] and finer["resolved"] == [96, 96] and finer["base"] == [64, 64]
    assert load_checkpoint(run).config.data.image_size == 96
    assert "working size 96 × 96 instead of 64 × 64: it catches more" in capsys.readouterr().err


def test_an_interrupted_choice_is_refused_then_replaced(many_good, tmp_path, capsys):
    run = tmp_path / "interrupted"
    (run / "feature_choice" / "shipped").mkdir(parents=True)  # what a fit stopped mid-choice leaves
    (run / ".defectscope-run").write_text("")
    args = ["fit", str(many_good), "--output", str(run), "--features", "shipped", *RANDOM_BACKBONE]
    assert main(args) == 2
    assert "holds an earlier choice of patch setting" in capsys.readouterr().err
    assert main([*args, "--overwrite"]) == 0 and not (run / "feature_choice").exists()


def test_a_named_setting_is_applied_without_a_choice(folders, tmp_path):
    run = tmp_path / "named"
    assert main(["fit", str(folders / "good"), "--features", "sparse_bank", "--model.coreset_ratio", "0.2",
                 "--output", str(run), *RANDOM_BACKBONE]) == 0
    assert load_checkpoint(run).config.model.coreset_ratio == pytest.approx(0.02)
    assert not (run / "feature_choice").exists()


def test_too_few_good_parts_keep_the_shipped_setting(folders, tmp_path, capsys):
    run = tmp_path / "few"
    assert main(["fit", str(folders / "good"), "--output", str(run), *RANDOM_BACKBONE]) == 0
    assert "patch setting: shipped (4 good parts held out; choosing needs 10" in capsys.readouterr().err
    assert load_checkpoint(run).config.model.backbone.taps == ()


def test_features_is_for_patchcore_with_its_taps_open(folders, tmp_path, capsys):
    assert main(["fit", str(folders / "good"), "--features", "auto", "--model", "padim",
                 "--output", str(tmp_path / "p"), *RANDOM_BACKBONE]) == 2
    assert "sets PatchCore's patch setting" in capsys.readouterr().err
    assert main(["fit", str(folders / "good"), "--features", "auto", "--model.backbone.taps", "[4, 10]",
                 "--output", str(tmp_path / "q"), *RANDOM_BACKBONE]) == 2
    assert "model.backbone.taps is set" in capsys.readouterr().err
    assert not (tmp_path / "p").exists() and not (tmp_path / "q" / "feature_choice").exists()


def test_fit_offers_every_setting_the_engine_knows():
    from defectscope.cli.fit import FEATURES
    from defectscope.engine.feature_choice import SETTINGS

    assert FEATURES == ("auto", *SETTINGS)
