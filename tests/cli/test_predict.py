"""`defectscope predict`: one row and one map per input, never mixed up; clear refusals; failures as rows."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from defectscope.cli.main import main
from defectscope.engine.detector import Detector
from defectscope.predict.output import PARTS_DIR
from helpers.serving import REPO_ROOT, make_checkpoint, noisy_image, normal_images


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained AE-SSIM at 32 px with calibration: smooth gradients pass, noise is flagged."""
    return make_checkpoint(tmp_path_factory.mktemp("predict") / "ckpt", ["widget"])


def save(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)
    return path


def rows_of(out: Path) -> list[dict[str, str]]:
    with (out / "scores.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def predict(checkpoint: Path, *args: str) -> int:
    return main(["predict", str(checkpoint), *args])


def test_maps_mirror_relative_paths_so_equal_names_never_share_a_map(checkpoint, tmp_path):
    root = tmp_path / "in"
    save(root / "line1" / "0001.png", normal_images(1, seed=1)[0])
    save(root / "line2" / "0001.png", noisy_image(32, seed=2))
    loose = save(tmp_path / "loose" / "0001.png", normal_images(1, seed=3)[0])
    out = tmp_path / "out"
    assert predict(checkpoint, str(root), str(loose), "--output", str(out)) == 0
    rows = rows_of(out)
    assert [r["path"] for r in rows] == [str(root / "line1" / "0001.png"), str(root / "line2" / "0001.png"),
                                         str(loose)]
    assert [r["map"] for r in rows] == ["line1/0001.png", "line2/0001.png", "0001.png"]
    pictures = [np.asarray(Image.open(out / "maps" / r["map"])) for r in rows]
    assert not np.array_equal(pictures[0], pictures[1])  # each row's map is its own image's
    assert sorted(p.relative_to(out / "maps").as_posix() for p in (out / "maps").rglob("*.png")) == \
        sorted(r["map"] for r in rows)


def test_two_inputs_that_would_share_a_map_are_refused_before_scoring(checkpoint, tmp_path, capsys):
    a = save(tmp_path / "a" / "0001.png", normal_images(1)[0])
    b = save(tmp_path / "b" / "0001.png", normal_images(1)[0])
    out = tmp_path / "out"
    assert predict(checkpoint, str(a.parent), str(b.parent), "--output", str(out)) == 2
    err = capsys.readouterr().err
    assert str(a) in err and str(b) in err and "Traceback" not in err
    assert not out.exists()


def test_the_same_file_reached_twice_is_scored_once(checkpoint, tmp_path):
    image = save(tmp_path / "in" / "x.png", normal_images(1)[0])
    assert predict(checkpoint, str(image.parent), str(image), "--output", str(tmp_path / "out")) == 0
    assert len(rows_of(tmp_path / "out")) == 1


def test_ground_truth_masks_are_skipped_with_one_line(checkpoint, tmp_path, mtsd_root, mvtec_root, capsys):
    out = tmp_path / "out"
    assert predict(checkpoint, str(mtsd_root), str(mvtec_root / "widget"), "--output", str(out), "--no-maps") == 0
    rows = rows_of(out)
    masks = list(mtsd_root.rglob("*.png")) + list((mvtec_root / "widget" / "ground_truth").rglob("*.*"))
    images = list(mtsd_root.rglob("*.jpg")) + [p for p in (mvtec_root / "widget").rglob("*.png")
                                               if "ground_truth" not in p.parts]
    assert masks and sorted(r["path"] for r in rows) == sorted(map(str, images))
    said = [line for line in capsys.readouterr().out.splitlines() if "ground-truth" in line]
    assert said == [said[0]] and said[0].startswith(f"skipped {len(masks)} ground-truth masks")
    assert f"listed in {out / 'scores.json'} (ground_truth_skipped_files)" in said[0]
    data = json.loads((out / "scores.json").read_text())
    assert data["ground_truth_skipped"] == len(masks) and data["ground_truth_skipped_files_left_out"] == 0
    assert sorted(data["ground_truth_skipped_files"]) == sorted(map(str, masks))


def test_a_non_empty_output_is_refused_and_overwrite_removes_only_what_predict_wrote(checkpoint, tmp_path, capsys):
    first, second = tmp_path / "first", tmp_path / "second"
    save(first / "old.png", normal_images(1)[0])
    save(second / "new.png", normal_images(1, seed=5)[0])
    out = tmp_path / "out"
    assert predict(checkpoint, str(first), "--output", str(out)) == 0
    (out / "notes.txt").write_text("mine")
    assert predict(checkpoint, str(second), "--output", str(out)) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "maps" / "old.png").is_file()  # refused: nothing touched
    assert predict(checkpoint, str(second), "--output", str(out), "--overwrite") == 0
    assert [r["path"] for r in rows_of(out)] == [str(second / "new.png")]
    assert sorted(p.name for p in (out / "maps").rglob("*")) == ["new.png"]  # the old map is gone
    assert (out / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["maps", "notes.txt", "scores.csv", "scores.json"]


def test_an_output_folder_inside_the_input_is_not_scored(checkpoint, tmp_path):
    root = tmp_path / "in"
    save(root / "x.png", normal_images(1)[0])
    for _ in range(2):
        assert predict(checkpoint, str(root), "--output", str(root / "pred"), "--overwrite") == 0
    assert len(rows_of(root / "pred")) == 1


def test_unreadable_and_oversized_images_become_rows_and_the_run_goes_on(checkpoint, tmp_path, capsys):
    root = tmp_path / "in"
    for i in range(20):
        save(root / f"img{i:02d}.png", normal_images(1, seed=i)[0] if i % 2 else noisy_image(32, i))
    broken = root / "img07.png"
    broken.write_bytes(broken.read_bytes()[:60])  # truncated PNG
    big = save(root / "zz_big.png", normal_images(1, size=48)[0])
    out = tmp_path / "out"
    assert predict(checkpoint, str(root), "--output", str(out), "--batch-size", "4",
                   "--max-image-pixels", str(40 * 40)) == 1
    rows = rows_of(out)
    assert len(rows) == 21
    failed = {r["path"]: r for r in rows if r["error"]}
    assert sorted(failed) == sorted([str(broken), str(big)])
    assert "Mpx is over the cap" in failed[str(big)]["error"] and "--max-image-pixels" in failed[str(big)]["error"]
    assert all(r["score"] == "" and r["map"] == "" for r in failed.values())
    assert all(float(r["score"]) >= 0 for r in rows if not r["error"])
    assert len(list((out / "maps").rglob("*.png"))) == 19
    summary = capsys.readouterr().out
    assert "scored 19 of 21 images" in summary and "2 could not be scored" in summary
    data = json.loads((out / "scores.json").read_text())
    assert data["failed"] == 2 and len(data["images"]) == 21 and data["images"][7]["score"] is None


@pytest.fixture
def no_hang():
    """Fail instead of waiting forever: opening a FIFO with no writer blocks."""
    def expire(signum, frame):
        raise TimeoutError("predict blocked (opened a FIFO?)")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(120)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def special_files(root: Path) -> dict[str, str]:
    """Entries named like images that are not image files, each with a word its row's error must hold."""
    root.mkdir(parents=True, exist_ok=True)
    os.mkfifo(root / "fifo.png")
    (root / "zero.png").symlink_to("/dev/zero")
    (root / "loop.png").symlink_to(root / "loop.png")
    (root / "gone.png").symlink_to(root / "nowhere.png")
    (root / "folder.png").mkdir()
    return {"fifo.png": "named pipe (FIFO)", "zero.png": "symbolic link to /dev/zero, a character device",
            "loop.png": "symbolic link loop", "gone.png": "broken link", "folder.png": "a folder named like an image"}


def test_special_files_in_a_folder_become_rows_with_their_reason_and_never_block(checkpoint, tmp_path, no_hang,
                                                                                capsys):
    root = tmp_path / "in"
    why = special_files(root)
    save(root / "good.png", normal_images(1)[0])
    save(root / "folder.png" / "inner.png", normal_images(1, seed=2)[0])  # a real image inside: scored on its own
    out = tmp_path / "out"
    assert predict(checkpoint, str(root), "--output", str(out)) == 1
    rows = {Path(r["path"]).relative_to(root).as_posix(): r for r in rows_of(out)}
    assert sorted(rows) == sorted([*why, "good.png", "folder.png/inner.png"])
    for name, word in why.items():
        assert word in rows[name]["error"] and rows[name]["score"] == rows[name]["map"] == "", name
    assert rows["good.png"]["error"] == rows["folder.png/inner.png"]["error"] == ""
    assert sorted(p.relative_to(out / "maps").as_posix() for p in (out / "maps").rglob("*") if p.is_file()) == \
        ["folder.png/inner.png", "good.png"]
    assert f"5 could not be scored (reason in the error column of {out / 'scores.csv'})" in capsys.readouterr().out
    assert json.loads((out / "scores.json").read_text())["failed"] == 5


def test_a_fifo_named_directly_is_a_row_not_a_hang(checkpoint, tmp_path, no_hang):
    why = special_files(tmp_path / "in")
    good = save(tmp_path / "good.jpg", normal_images(1)[0])
    out = tmp_path / "out"
    assert predict(checkpoint, str(tmp_path / "in" / "fifo.png"), str(good), "--output", str(out)) == 1
    rows = rows_of(out)
    assert [r["path"] for r in rows] == [str(tmp_path / "in" / "fifo.png"), str(good)]
    assert why["fifo.png"] in rows[0]["error"] and rows[1]["map"] == "good.png" and rows[1]["error"] == ""


def test_maps_are_named_by_stem_with_the_suffix_kept_where_one_folder_shares_it(checkpoint, tmp_path):
    root = tmp_path / "in"
    for name in ("a.tif", "a.jpg", "b.bmp"):  # (a.png beside a.jpg would be MTSD's mask of it)
        save(root / name, normal_images(1)[0])
    out = tmp_path / "out"
    assert predict(checkpoint, str(root), "--output", str(out)) == 0
    assert [r["map"] for r in rows_of(out)] == ["a_jpg.png", "a_tif.png", "b.png"]
    assert all((out / "maps" / r["map"]).is_file() for r in rows_of(out))


def test_rows_carry_the_detectors_numbers(checkpoint, tmp_path):
    root = tmp_path / "in"
    images = [noisy_image(32, 1), normal_images(1, seed=4)[0], noisy_image(40, 3)[:, :24]]
    paths = [save(root / f"{i}.png", image) for i, image in enumerate(images)]
    out = tmp_path / "out"
    assert predict(checkpoint, str(root), "--output", str(out)) == 0
    from defectscope.data.image_io import load_image

    detections = Detector.from_checkpoint(checkpoint).score([load_image(p).permute(1, 2, 0).numpy() for p in paths])
    rows = rows_of(out)
    for row, det in zip(rows, detections, strict=True):
        # predict's calls may run on fewer threads than this detector: float32 sums in another order
        assert float(row["score"]) == pytest.approx(det.score, rel=1e-5)
        assert float(row["normalized_score"]) == pytest.approx(det.normalized_score, rel=1e-5)
        assert float(row["defect_area"]) == pytest.approx(det.defect_area, abs=1e-9)
        assert row["verdict"] == ("DEFECT" if det.defective else "OK")
        assert (row["verdict"] == "DEFECT") == (float(row["normalized_score"]) > 0.5)
    assert [r["verdict"] for r in rows] == ["DEFECT", "OK", "DEFECT"]
    data = json.loads((out / "scores.json").read_text())
    assert data["normalized_threshold"] == 0.5 and data["images"][0]["defective"] is True


@pytest.mark.parametrize("calls", [1, 2])
def test_images_stream_a_batch_per_call_and_rows_land_in_order(checkpoint, tmp_path, monkeypatch, calls):
    """The detector never sees more than --batch-size images in a call nor more than --concurrent-calls
    calls at once, and a batch is read only once the rows of all but the last calls-1 batches are on disk."""
    root = tmp_path / "in"
    for i in range(7):
        save(root / f"{i}.png", normal_images(1, seed=i)[0])
    out = tmp_path / "out"
    seen: list[tuple[int, int]] = []
    inside, most = [0], [0]
    lock = threading.Lock()
    original = Detector.score
    first_two = threading.Barrier(calls, timeout=10)  # broken if the second call cannot start beside the first

    def spy(self, images, class_name=None):
        part = out / PARTS_DIR / "rank0.csv"
        with lock:
            seen.append((len(images), len(part.read_text().splitlines()) - 1))
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        if len(seen) <= calls:
            first_two.wait()
        try:
            return original(self, images, class_name)
        finally:
            with lock:
                inside[0] -= 1

    monkeypatch.setattr(Detector, "score", spy)
    assert predict(checkpoint, str(root), "--output", str(out), "--batch-size", "3",
                   "--concurrent-calls", str(calls)) == 0
    assert not first_two.broken
    if calls == 1:
        assert seen == [(3, 0), (3, 3), (1, 6)]
    else:  # the first two batches side by side; the third once the first's rows are written
        assert seen[:2] == [(3, 0), (3, 0)] and seen[2] in [(1, 3), (1, 6)]
    assert most[0] == calls
    assert [Path(r["path"]).name for r in rows_of(out)] == [f"{i}.png" for i in range(7)]
    assert json.loads((out / "scores.json").read_text())["concurrent_calls"] == calls


def test_a_crash_leaves_no_half_written_score_table(checkpoint, tmp_path, monkeypatch):
    root = tmp_path / "in"
    for i in range(4):
        save(root / f"{i}.png", normal_images(1, seed=i)[0])
    calls = []
    original = Detector.score

    def failing(self, images, class_name=None):
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("power cut")
        return original(self, images, class_name)

    monkeypatch.setattr(Detector, "score", failing)
    with pytest.raises(RuntimeError):
        predict(checkpoint, str(root), "--output", str(tmp_path / "out"), "--batch-size", "2")
    assert not (tmp_path / "out" / "scores.csv").exists() and not (tmp_path / "out" / "scores.json").exists()


@pytest.mark.parametrize("fail", [False, True])
def test_the_callers_torch_thread_count_is_put_back(checkpoint, tmp_path, monkeypatch, fail):
    """predict shares the cores out among its calls; a program that calls it keeps its own setting."""
    import torch

    root = tmp_path / "in"
    for i in range(4):
        save(root / f"{i}.png", normal_images(1, seed=i)[0])
    if fail:
        monkeypatch.setattr(Detector, "score", lambda self, images, class_name=None: 1 / 0)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        args = (str(root), "--output", str(tmp_path / "out"), "--batch-size", "2", "--concurrent-calls", "2",
                "--threads", "1")
        if fail:
            with pytest.raises(ZeroDivisionError):
                predict(checkpoint, *args)
        else:
            assert predict(checkpoint, *args) == 0
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


@pytest.mark.parametrize(("flags", "needle"), [(["--batch-size", "0"], "--batch-size"),
                                               (["--batch-size", "-1"], "--batch-size"),
                                               (["--max-image-pixels", "0"], "--max-image-pixels"),
                                               (["--concurrent-calls", "0"], "--concurrent-calls"),
                                               (["--data.image_size", "64"], "data.image_size")])
def test_bad_options_are_clear_errors_before_scoring(checkpoint, tmp_path, capsys, flags, needle):
    image = save(tmp_path / "x.png", normal_images(1)[0])
    assert predict(checkpoint, str(image), "--output", str(tmp_path / "out"), *flags) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_unwritable_output_paths_are_clear_errors(checkpoint, tmp_path, capsys):
    image = save(tmp_path / "x.png", normal_images(1)[0])
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file, not a folder")
    for out in (blocker, blocker / "out"):
        assert predict(checkpoint, str(image), "--output", str(out)) == 2
        err = capsys.readouterr().err
        assert str(out) in err and "Traceback" not in err


def test_onnxruntime_backend_says_what_is_missing(checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "defectscope.export.runtime", None)  # as if the export module were absent
    image = save(tmp_path / "x.png", normal_images(1)[0])
    assert predict(checkpoint, str(image), "--output", str(tmp_path / "out"), "--backend", "onnxruntime") == 2
    err = capsys.readouterr().err
    assert "defectscope[export]" in err and "Traceback" not in err


def test_a_missing_onnx_model_is_a_clear_error_naming_it(tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    image = save(tmp_path / "x.jpg", normal_images(1)[0])
    missing = tmp_path / "nowhere" / "model.onnx"
    assert predict(missing, str(image), "--output", str(tmp_path / "out"), "--backend", "onnxruntime") == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "not found" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()


def test_a_multi_class_model_needs_the_class_named(tmp_path, capsys):
    two = make_checkpoint(tmp_path / "ckpt2", ["widget", "gadget"])
    image = save(tmp_path / "x.png", normal_images(1)[0])
    assert predict(two, str(image), "--output", str(tmp_path / "a")) == 2
    assert "--class-name" in capsys.readouterr().err
    assert predict(two, str(image), "--output", str(tmp_path / "b"), "--class-name", "gadget") == 0
    assert rows_of(tmp_path / "b")[0]["class_name"] == "gadget"


@pytest.mark.ddp
def test_two_ranks_write_the_same_table_as_one_process(checkpoint, tmp_path):
    root = tmp_path / "in"
    for i in range(9):
        save(root / f"part{i % 3}" / f"{i}.png", noisy_image(32, i) if i % 4 == 0 else normal_images(1, seed=i)[0])
    broken = save(root / "part1" / "broken.png", normal_images(1)[0])
    broken.write_bytes(broken.read_bytes()[:50])
    # same threads and batch size in both: a conv's float sums may be ordered by either
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
           "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH", "")])}
    verb = ["-m", "defectscope", "predict", str(checkpoint), str(root), "--batch-size", "1", "--output"]
    single = subprocess.run([sys.executable, *verb, str(tmp_path / "one")], capture_output=True, text=True,
                            timeout=300, env=env)
    assert single.returncode == 1, single.stderr[-3000:]  # the broken image
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *verb,
         str(tmp_path / "two")], capture_output=True, text=True, timeout=300, env=env,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # the broken image: exit status 1 on every rank
    assert proc.stdout.count("scored 9 of 10 images") == 1  # rank 0 speaks for all
    one, two = rows_of(tmp_path / "one"), rows_of(tmp_path / "two")
    assert [r["path"] for r in two] == [r["path"] for r in one] and len(one) == 10
    for a, b in zip(one, two, strict=True):
        assert (a["map"], a["verdict"], a["error"] != "") == (b["map"], b["verdict"], b["error"] != "")
        if a["score"]:
            assert float(a["score"]) == pytest.approx(float(b["score"]), abs=1e-6)
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == ["maps", "scores.csv", "scores.json"]
    assert json.loads((tmp_path / "two" / "scores.json").read_text())["world_size"] == 2


def test_patchcore_features_run_where_the_flag_says_and_the_scores_agree(tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason="onnxruntime is optional (pip install 'defectscope[export]')")
    from helpers.serving import make_patchcore_checkpoint

    patchcore = make_patchcore_checkpoint(tmp_path / "final")
    images = [save(tmp_path / "in" / f"{i}.png", noisy_image(64, seed=i)) for i in range(2)]
    scores = {}
    for runtime in ("auto", "torch"):
        out = tmp_path / runtime
        assert predict(patchcore, str(tmp_path / "in"), "--output", str(out), "--feature-runtime", runtime) == 0
        said = "onnxruntime" if runtime == "auto" else "torch"
        assert f"features in {said})" in capsys.readouterr().out
        scores[runtime] = [float(r["score"]) for r in rows_of(out)]
    assert len(scores["auto"]) == len(images)
    assert scores["auto"] == pytest.approx(scores["torch"], rel=1e-4)


def test_onnxruntime_features_without_onnxruntime_are_a_clear_error(tmp_path, capsys, monkeypatch):
    import defectscope.engine.detector as detector_module
    from helpers.serving import make_patchcore_checkpoint

    patchcore = make_patchcore_checkpoint(tmp_path / "final")
    image = save(tmp_path / "x.png", normal_images(1, 64)[0])
    monkeypatch.setattr(detector_module, "onnxruntime_available", lambda: False)
    assert predict(patchcore, str(image), "--output", str(tmp_path / "out"), "--feature-runtime", "onnxruntime") == 2
    err = capsys.readouterr().err
    assert "--feature-runtime" in err and "defectscope[export]" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "scores.csv").exists()


def test_a_bad_checkpoint_is_not_called_a_feature_runtime_error(tmp_path, capsys):
    image = save(tmp_path / "x.png", normal_images(1)[0])
    assert predict(tmp_path / "nowhere", str(image), "--output", str(tmp_path / "out")) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "--feature-runtime" not in err and "Traceback" not in err


def test_an_exported_model_refuses_torch_features_before_loading(tmp_path, capsys):
    image = save(tmp_path / "x.png", normal_images(1)[0])
    assert predict(tmp_path / "part.onnx", str(image), "--output", str(tmp_path / "out"),
                   "--feature-runtime", "torch") == 2
    err = capsys.readouterr().err
    assert "--feature-runtime torch" in err and "wholly in onnxruntime" in err and "Traceback" not in err
