"""`defectscope accept RUN IMAGES…`: what it prints, what it writes, and what it refuses (exit status 2)."""

from __future__ import annotations

import pytest

from defectscope.cli.main import main
from defectscope.engine.checkpoint import load_checkpoint
from helpers.runs import tiny_config_text


@pytest.fixture(scope="module")
def run(tmp_path_factory, mtsd_root):
    """A tiny PatchCore run on the synthetic MTSD tree (random backbone), calibrated on a hold-out."""
    root = tmp_path_factory.mktemp("accept_cli")
    config = root / "patchcore.yaml"
    config.write_text(tiny_config_text(mtsd_root, root / "run", "patchcore").replace(
        "data:\n", "data:\n  validation_fraction: 0.3\n", 1))
    assert main(["train", str(config), "--no-test"]) == 0
    return root / "run"


@pytest.fixture
def parts(mtsd_root):
    return [str(p) for p in sorted((mtsd_root / "MT_Crack" / "Imgs").glob("*.jpg"))[:2]]


@pytest.mark.filterwarnings("ignore::UserWarning")  # 3 held-out images cannot promise 1 %
def test_accept_prints_what_changed_and_writes_the_checkpoint(run, parts, tmp_path, capsys):
    before = load_checkpoint(run)
    assert main(["accept", str(run), *parts, "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    after = load_checkpoint(tmp_path / "out")
    grown = f"bank size: {len(before.model.memory.bank)} → {len(after.model.memory.bank)}"
    assert "accepted 2 images as good" in out and grown in out
    assert all(f"{p}: score " in out for p in parts)
    threshold = before.calibration.image.threshold.value
    assert f"threshold {threshold:.6g} → {threshold:.6g} (kept" in out
    assert f"written: {tmp_path / 'out'}" in out
    assert len(load_checkpoint(run).model.memory.bank) == len(before.model.memory.bank)  # --output: run untouched


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_accept_rescore_says_where_the_threshold_came_from(run, parts, tmp_path, capsys):
    assert main(["accept", str(run), parts[0], "--rescore", "--output", str(tmp_path / "r")]) == 0
    assert "set again from its held-out good parts, scored by the updated model" in capsys.readouterr().out


def test_accept_refuses_with_exit_status_2(run, tmp_path, capsys, mtsd_root):
    assert main(["accept", str(run), str(tmp_path / "nowhere.png")]) == 2
    assert "defectscope accept: error:" in capsys.readouterr().err
    assert main(["accept", str(tmp_path / "no_run"), str(next(mtsd_root.rglob("*.jpg")))]) == 2
    assert "checkpoint not found" in capsys.readouterr().err
    assert main(["accept", str(run), str(next(mtsd_root.rglob("*.jpg"))), "--class-name", "other"]) == 2
    assert "'other' is not one of" in capsys.readouterr().err
