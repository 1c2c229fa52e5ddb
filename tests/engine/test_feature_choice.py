"""`fit --features auto`'s second step: the chosen setting on a finer working size, kept on the ladder's terms.

The fits are replaced by fixed ladder figures, so what is tested is the decision and what it
hands on, not a model's luck; tests/cli/test_first_hour.py runs the real fits.
"""

from __future__ import annotations

import json
import shutil

import pytest

from defectscope.data.config import AutoSize
from defectscope.engine import feature_choice
from defectscope.engine.presets import folder_config
from helpers.serving import REPO_ROOT

DEMO = REPO_ROOT / "demo" / "mtsd_demo"


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    for path in sorted((DEMO / "MT_Free" / "Imgs").glob("*.jpg"))[:100]:
        shutil.copy(path, folder)
    return folder


def fake_ladder(caught_at: dict[int, float], fitted: list):
    """Stands in for a candidate's fit: its ladder figure by working size (height × width)."""

    def fit_and_ladder(cfg, model, holdout, bundle, output, overwrite):
        size = cfg.data.image_size
        pixels = size * size if isinstance(size, int) else size[0] * size[1]
        fitted.append((output.name, pixels, len(bundle.validation)))
        output.mkdir(parents=True)  # as the run would
        return {"held_out": float(len(bundle.validation)), "caught": caught_at[pixels], "auroc": 0.9}

    return fit_and_ladder


@pytest.mark.parametrize(("finer_caught", "kept"), [(0.5 + 0.1, True), (0.5 + 0.09, False)])
def test_the_finer_size_is_kept_only_by_one_held_out_image_more(good, tmp_path, monkeypatch, finer_caught, kept):
    fitted: list = []
    cfg = folder_config(good, "patchcore", tmp_path / "run", ["--data.image_size", "{kind: auto, pixels: 4096}"])
    base, finer = 64 * 64, 96 * 96  # 100 tiles of median aspect 1.17 at 4,096 and 9,216 px, sides multiples of 32
    monkeypatch.setattr(feature_choice, "_fit_and_ladder", fake_ladder({base: 0.5, finer: finer_caught}, fitted))
    choice = feature_choice.choose_features(cfg, tmp_path / "choice")
    # four settings at the base size, then the chosen one (shipped: none won) at the finer size,
    # every fit on the same 10 held-out parts
    assert fitted == [(s, base, 10) for s in feature_choice.SETTINGS] + [("shipped_finer", finer, 10)]
    assert choice.finer_chosen is kept
    assert choice.image_size == (AutoSize(pixels=9216) if kept else AutoSize(pixels=4096))
    record = json.loads((tmp_path / "choice" / "choice.json").read_text())["finer_size"]
    assert record["chosen"] is kept and record["resolved"] == [96, 96] and record["pixels"] == 9216
    assert ("each part costs about 2.25×" in choice.describe()) is kept


def test_a_given_size_or_too_few_parts_try_no_finer_size(good, tmp_path, monkeypatch):
    fitted: list = []
    monkeypatch.setattr(feature_choice, "_fit_and_ladder", fake_ladder({64 * 64: 0.5}, fitted))
    cfg = folder_config(good, "patchcore", tmp_path / "run", ["--data.image_size", "64"])
    choice = feature_choice.choose_features(cfg, tmp_path / "given")
    assert [name for name, _, _ in fitted] == list(feature_choice.SETTINGS) and choice.image_size == 64
    assert choice.finer is None and "working size" not in choice.describe()
    few = folder_config(good, "patchcore", tmp_path / "few", ["--data.image_size", "{kind: auto, pixels: 4096}",
                                                              "--data.validation_fraction", "0.05"])
    fitted.clear()
    choice = feature_choice.choose_features(few, tmp_path / "few_choice")
    assert fitted == [] and choice.finer is None and choice.image_size == AutoSize(pixels=4096)
