"""`fit --features auto`'s second step: the chosen setting on a finer working size, kept on the ladder's terms.

The fits are replaced by fixed ladder figures, so what is tested is the decision and what it
hands on, not a model's luck; tests/cli/test_first_hour.py runs the real fits.
"""

from __future__ import annotations

import json

import pytest

from defectscope.data.config import AutoSize
from defectscope.engine import feature_choice
from defectscope.engine.presets import folder_config
from defectscope.geometry import as_hw
from helpers.runs import demo_good_folder

SMALL_AUTO = ["--data.image_size", "{kind: auto, pixels: 4096}"]
BASE, FINER = 64 * 64, 96 * 96  # 100 demo tiles (median aspect 1.17) at 4,096 and 9,216 px, sides multiples of 32


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    return demo_good_folder(tmp_path_factory.mktemp("good"))


def fake_ladder(caught: dict[tuple[str, int], float], fitted: list):
    """Stands in for a candidate's fit: its ladder figure by (taps, working size in pixels)."""

    def fit_and_ladder(cfg, model, holdout, bundle, output, overwrite):
        h, w = as_hw(cfg.data.image_size)
        held_out = sorted(str(r.image_path) for r in bundle.validation.records)
        fitted.append((output.name, model, h * w, held_out))
        output.mkdir(parents=True)  # as the run would
        return {"held_out": float(len(held_out)), "caught": caught.get((str(model.backbone.taps), h * w), 0.3),
                "auroc": 0.9}

    return fit_and_ladder


@pytest.mark.parametrize(("finer_caught", "kept"), [(0.5 + 0.1, True), (0.5 + 0.09, False)])
def test_the_finer_size_is_kept_only_by_one_held_out_image_more(good, tmp_path, monkeypatch, finer_caught, kept):
    fitted: list = []
    cfg = folder_config(good, "patchcore", tmp_path / "run", SMALL_AUTO)
    with_last = str(feature_choice.apply_setting(feature_choice.patchcore_model(cfg), "with_last").backbone.taps)
    monkeypatch.setattr(feature_choice, "fit_and_ladder",
                        fake_ladder({(with_last, BASE): 0.5, (with_last, FINER): finer_caught}, fitted))
    choice = feature_choice.choose_features(cfg, tmp_path / "choice")
    assert choice.chosen == "with_last"
    # four settings at the base size, then the chosen one at the finer size, all on the same held-out parts
    names = [name for name, *_ in fitted]
    assert names == [*feature_choice.SETTINGS, "with_last_finer"]
    assert [pixels for _, _, pixels, _ in fitted] == [BASE] * 4 + [FINER]
    assert fitted[-1][1] == choice.model and all(len(f[3]) == 10 and f[3] == fitted[0][3] for f in fitted)
    assert choice.finer is not None and choice.finer.chosen is kept
    assert choice.image_size == AutoSize(pixels=FINER if kept else BASE)
    record = json.loads((tmp_path / "choice" / "choice.json").read_text())["finer_size"]
    assert record["chosen"] is kept and record["resolved"] == [96, 96] and record["base"] == [64, 64]
    assert ("a part costs 2.2× as much" in choice.describe()) is kept


def test_a_given_size_or_too_few_parts_try_no_finer_size(good, tmp_path, monkeypatch):
    fitted: list = []
    monkeypatch.setattr(feature_choice, "fit_and_ladder", fake_ladder({}, fitted))
    cfg = folder_config(good, "patchcore", tmp_path / "run", ["--data.image_size", "64"])
    choice = feature_choice.choose_features(cfg, tmp_path / "given")
    assert [name for name, *_ in fitted] == list(feature_choice.SETTINGS) and choice.image_size == 64
    assert choice.finer is None and "working size" not in choice.describe()
    few = folder_config(good, "patchcore", tmp_path / "few", [*SMALL_AUTO, "--data.validation_fraction", "0.05"])
    fitted.clear()
    choice = feature_choice.choose_features(few, tmp_path / "few_choice")
    assert fitted == [] and choice.finer is None and choice.image_size == AutoSize(pixels=BASE)
