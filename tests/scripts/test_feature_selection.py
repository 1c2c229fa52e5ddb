"""scripts/feature_selection.py: a setting per group chosen from held-out good images alone, test figures beside."""

from defectscope.engine import run
from helpers.runs import tiny_config, tiny_config_file  # noqa: F401 - fixtures
from helpers.scripts import load_script


def test_each_group_gets_one_choice(tmp_path, tiny_config, capsys, monkeypatch):  # noqa: F811
    feature_selection = load_script("feature_selection")
    folder = tmp_path / "suite"
    for setting, extra in (("tiny_default", []), ("tiny_p5", ["--model.neighbourhood", "5"])):
        cell = folder / "cells" / f"{setting}.mtsd.multi_class.all.s0"
        run(tiny_config("patchcore", overrides=["--output_dir", str(cell), *extra]), evaluate_test=True)
    found = feature_selection.criterion(folder / "cells" / "tiny_default.mtsd.multi_class.all.s0")
    assert 0 <= found["caught"] <= 1 and 0 <= found["auroc"] <= 1 and found["held_out"] >= 1
    assert {"rectangle_caught", "faint_caught", "scar_caught"} <= set(found)
    monkeypatch.setattr("sys.argv", ["feature_selection.py", str(folder)])
    feature_selection.main()
    table = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| tiny_")]
    assert len(table) == 2 and sum("(chosen" in line for line in table) == 1
