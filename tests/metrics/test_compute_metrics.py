import ast
import math
import sys
from pathlib import Path

import numpy as np
import pytest

import defectscope.metrics as metrics_package
from defectscope.metrics import aupro, compute_metrics, f1_max, image_auroc, pixel_auroc

from .synthetic import random_case

KEYS = {"image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max"}


def _test_set(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    maps, masks = random_case(seed, "decimal")
    labels = masks.any(axis=(1, 2))
    scores = maps.max(axis=(1, 2))
    return scores, labels, maps, masks


def test_returns_every_metric_as_the_single_functions_do() -> None:
    scores, labels, maps, masks = _test_set()
    result = compute_metrics(scores, labels, maps, masks)
    assert set(result) == KEYS
    assert all(type(v) is float for v in result.values())
    assert result["image_auroc"] == image_auroc(scores, labels)
    assert result["pixel_auroc"] == pixel_auroc(maps, masks)
    assert result["aupro"] == aupro(maps, masks)
    assert result["image_f1_max"] == f1_max(scores, labels)
    assert result["pixel_f1_max"] == f1_max(maps, masks)
    assert compute_metrics(scores, labels, maps, masks, fpr_limit=0.05)["aupro"] == aupro(
        maps, masks, 0.05
    )


def test_all_good_test_set_gives_nan_not_an_error() -> None:
    scores, _, maps, _ = _test_set()
    result = compute_metrics(scores, np.zeros(len(scores)), maps, np.zeros(maps.shape))
    assert set(result) == KEYS
    assert all(math.isnan(v) for v in result.values())


def test_rejects_inputs_that_do_not_belong_together() -> None:
    scores, labels, maps, masks = _test_set()
    with pytest.raises(ValueError, match="maps .* and masks .* same shape"):
        compute_metrics(scores, labels, maps, masks[:, :, :-1])
    with pytest.raises(ValueError, match="image_scores .* and image_labels"):
        compute_metrics(scores, labels[:-1], maps, masks)
    with pytest.raises(ValueError, match="images"):
        compute_metrics(scores[:-1], labels[:-1], maps, masks)
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        compute_metrics(scores, labels, maps[:, None], masks[:, None])
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(np.where(labels, np.nan, scores), labels, maps, masks)
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics(scores, labels, np.full(maps.shape, np.nan), masks)
    with pytest.raises(ValueError, match="0 and 1"):
        compute_metrics(scores, labels, maps, masks * 0.5)


def test_package_imports_only_numpy_scipy_and_stdlib() -> None:
    """The metrics must run without torch and without the rest of defectscope."""
    allowed = {"numpy", "scipy", "sklearn"} | set(sys.stdlib_module_names)
    for path in Path(metrics_package.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name} imports from outside defectscope.metrics"
                if node.level == 1:
                    continue  # from .x import y: stays inside defectscope.metrics
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= allowed, f"{path.name} imports {roots - allowed}"
