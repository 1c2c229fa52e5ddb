"""Running a verb again never loses work silently, and a bad file or value is a one-line error (exit 2)."""

from __future__ import annotations

import json

from defectscope.cli.main import main
from defectscope.engine import save_checkpoint
from defectscope.engine.run import MARKER, build_model


def test_demo_refuses_to_replace_an_earlier_demo_unless_told(tmp_path, capsys):
    out = tmp_path / "demo"
    out.mkdir()
    (out / "results.json").write_text("{}")  # an earlier demo's (written by defectscope: marked)
    (out / MARKER).write_text("")
    (out / "my_notes.txt").write_text("kept")
    small = ["--output", str(out), "--no-baseline", "--train.progress", "false", "--data.image_size", "64"]
    assert main(["demo", *small]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "results.json").read_text() == "{}"
    assert main(["demo", *small, "--overwrite"]) == 0
    assert (out / "my_notes.txt").read_text() == "kept"
    assert json.loads((out / "results.json").read_text())["num_test_images"] > 0


def test_test_verb_refuses_a_data_file_whose_data_is_not_a_mapping(tiny_config, tmp_path, capsys):
    cfg = tiny_config()
    final = save_checkpoint(tmp_path / "final", build_model(cfg, 1), cfg, ["mtsd"])
    data = tmp_path / "data.yaml"
    for text in ("data: [a, b]\n", "data: 3\n"):
        data.write_text(text)
        assert main(["test", str(final), "--data", str(data), "--output", str(tmp_path / "t")]) == 2
        assert f"{data}: 'data' must be a mapping" in capsys.readouterr().err


def test_a_value_out_of_range_is_a_clean_error(tiny_config_file, capsys):
    config = tiny_config_file()
    assert main(["train", str(config), "--data.batch_size", "0"]) == 2
    err = capsys.readouterr().err
    assert "'data.batch_size' must be ≥ 1 and ≤ 65536, got 0" in err and "Traceback" not in err
    assert not (config.parent / "run").exists()  # refused before anything was written
