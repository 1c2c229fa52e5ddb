"""What each evaluation leaves for the report: scores.csv, curves.json and gallery/."""

import csv
import json

import numpy as np
import pytest
import torch

from defectscope.data import build_datasets
from defectscope.engine import evaluate, run
from defectscope.engine.artifacts import MAX_CURVE_POINTS
from defectscope.engine.gallery import GalleryPlan, gallery_indices


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory, mtsd_root):
    """A 2-step AE-SSIM, evaluated with an explain_maps hook attached (as PVQAE has)."""
    from defectscope.config import load_config
    from helpers.runs import tiny_config_text

    tmp = tmp_path_factory.mktemp("artifacts")
    (tmp / "run.yaml").write_text(tiny_config_text(mtsd_root, tmp / "run", "ae_ssim", steps=2))
    cfg = load_config(tmp / "run.yaml")
    model = run(cfg, evaluate_test=False).model
    model.explain_maps = lambda images, class_ids: {"level": images[:, 0] > 0.5}
    bundle = build_datasets(cfg.data)
    results = evaluate(model, bundle.test, bundle.class_names, cfg, torch.device("cpu"), tmp / "eval",
                       gallery=GalleryPlan(per_end=3))
    return tmp / "eval", results, bundle


def test_scores_csv_has_one_row_per_test_image(evaluated):
    out, results, bundle = evaluated
    rows = list(csv.DictReader((out / "scores.csv").open()))
    assert len(rows) == len(bundle.test) == results["num_test_images"]
    assert set(rows[0]) == {"path", "class", "defect_type", "label", "score"}
    assert {r["defect_type"] for r in rows} == {"good", "blowhole", "crack", "uneven"}
    assert all((r["defect_type"] == "good") == (r["label"] == "0") for r in rows)
    assert results["artifacts"]["scores"] == "scores.csv"


def test_curves_match_the_metrics_and_are_small(evaluated):
    out, results, _ = evaluated
    curves = json.loads((out / "curves.json").read_text())
    entry = curves["categories"]["mtsd"]
    metrics = results["categories"]["mtsd"]
    for key, metric in (("image_roc", "image_auroc"), ("pixel_roc", "pixel_auroc"), ("pro", "aupro")):
        assert entry[key]["area"] == pytest.approx(metrics[metric])
        assert 2 <= len(entry[key]["fpr"]) <= MAX_CURVE_POINTS
    assert entry["pixel_roc"]["fpr"][-1] == 1.0 and entry["pro"]["fpr"][-1] == pytest.approx(0.3)


def test_gallery_holds_the_extremes_with_maps_masks_and_extra_maps(evaluated):
    out, results, bundle = evaluated
    items = json.loads((out / "gallery" / "index.json").read_text())
    most = [i for i in items if i["end"] == "most"]
    least = [i for i in items if i["end"] == "least"]
    assert len(most) == len(least) == 3
    assert min(i["score"] for i in most) >= max(i["score"] for i in least)
    with np.load(out / "gallery" / most[0]["file"]) as npz:
        assert npz["image"].shape == (32, 32, 3) and npz["image"].dtype == np.uint8
        assert npz["map"].shape == npz["mask"].shape == npz["extra_level"].shape == (32, 32)
    assert most[0]["extra_maps"] == ["level"]


def test_gallery_indices_never_repeat_an_image():
    picked = gallery_indices(np.array([0.3, 0.1, 0.2]), per_end=2)
    assert picked == [("most", 0), ("most", 2), ("least", 1)]
