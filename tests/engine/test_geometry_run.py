"""Images that are not square and not small, end to end: train, evaluate at the original resolution,
predict, export. Synthetic data: flat grey parts with a little noise, one bright square as the defect."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from defectscope.config import ConfigError, load_config
from defectscope.data.geometry import Box, fit, valid_mask
from defectscope.engine import run
from defectscope.engine.detector import Detector
from defectscope.engine.inference import torch_network
from defectscope.models.base import AnomalyModel, ModelOutput
from defectscope.scoring.path import TileGrid, Viewing, score_canvases

HEIGHT, WIDTH = 300, 1000  # a line-scan strip, far from square
DEFECT = (140, 790, 24, 24)  # top, left, height, width


def _part(rng: np.random.Generator, height: int = HEIGHT, width: int = WIDTH) -> np.ndarray:
    return np.clip(120 + rng.normal(0, 4, (height, width, 3)), 0, 255).astype(np.uint8)


def _strips(root: Path, good: int = 12, test_good: int = 4, defective: int = 4) -> Path:
    rng = np.random.default_rng(0)
    for folder in ("good", "test_good", "bad", "masks"):
        (root / folder).mkdir(parents=True)
    for i in range(good):
        Image.fromarray(_part(rng)).save(root / "good" / f"{i:03d}.png")
    for i in range(test_good):
        Image.fromarray(_part(rng)).save(root / "test_good" / f"{i:03d}.png")
    top, left, h, w = DEFECT
    for i in range(defective):
        image = _part(rng)
        image[top:top + h, left:left + w] = 250
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[top:top + h, left:left + w] = 255
        Image.fromarray(image).save(root / "bad" / f"{i:03d}.png")
        Image.fromarray(mask).save(root / "masks" / f"{i:03d}.png")
    return root


def _config(tmp_path: Path, data_root: Path, *extra: str):
    return load_config(None, [
        "--model.name=mean_image", "--model.smoothing_sigma=1",
        f"--data.sources=[{{layout: folder, root: {data_root}, defect_dir: bad, mask_dir: masks, "
        "test_good_dir: test_good}]",
        "--data.batch_size=4", "--data.eval_batch_size=4", "--data.validation_fraction=0.2",
        "--data.augment={hflip: false}", "--train.progress=false", "--eval.bootstrap_resamples=50",
        f"--output_dir={tmp_path / 'run'}", *extra,
    ])


@pytest.fixture(scope="module")
def strips(tmp_path_factory):
    return _strips(tmp_path_factory.mktemp("strips"))


@pytest.fixture(scope="module")
def tiled_run(tmp_path_factory, strips):
    tmp = tmp_path_factory.mktemp("tiled")
    cfg = _config(tmp, strips, "--data.resize=none", "--data.tiling={kind: tiles, tile: 64, stride: 48}",
                  "--eval.resolution=original")
    return run(cfg)


def test_a_defect_in_a_1000_by_300_image_is_found_where_it_was_drawn(tiled_run, strips):
    detector = Detector.from_checkpoint(tiled_run.checkpoint)
    image = np.asarray(Image.open(strips / "bad" / "000.png"))
    found = detector.score([image])[0]
    assert found.anomaly_map.shape == (HEIGHT, WIDTH)
    y, x = np.unravel_index(np.argmax(found.anomaly_map), found.anomaly_map.shape)
    top, left, h, w = DEFECT
    assert top - 2 <= y < top + h + 2 and left - 2 <= x < left + w + 2


def test_tiled_results_are_measured_at_the_original_resolution(tiled_run):
    results = tiled_run.results
    assert results["geometry"]["resolution"] == "original"
    assert results["geometry"]["tiling"]["tile"] == 64
    # the gallery's maps are the images' own size, not a tile's
    gallery = tiled_run.run_dir / "gallery"
    shapes = {np.load(p)["map"].shape for p in gallery.glob("*.npz")}
    assert shapes == {(HEIGHT, WIDTH)}
    index = json.loads((gallery / "index.json").read_text())
    assert all(np.load(gallery / e["file"])["image"].shape[:2] == (HEIGHT, WIDTH) for e in index)
    # a bright square on flat grey: any working map separates it; the check is that the pipeline runs
    # at 300 x 1000 and the interval is a real one
    (name,) = results["categories"]
    assert results["categories"][name]["pixel_auroc"] > 0.9
    low, high = results["intervals"][name]["pixel_auroc"]
    assert low - 2e-3 <= results["categories"][name]["pixel_auroc"] <= high + 2e-3  # binned bootstrap: ~1/bins


def test_an_exported_tiled_model_scores_as_torch_does(tiled_run, strips, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from defectscope.engine.checkpoint import load_checkpoint
    from defectscope.export.onnx_graph import export_onnx
    from defectscope.export.runtime import OnnxDetector

    path = tmp_path / "model.onnx"
    export_onnx(load_checkpoint(tiled_run.checkpoint), path)
    image = np.asarray(Image.open(strips / "bad" / "001.png"))
    ours = Detector.from_checkpoint(tiled_run.checkpoint).score([image])[0]
    theirs = OnnxDetector(path).score([image])[0]
    assert theirs.anomaly_map.shape == ours.anomaly_map.shape == (HEIGHT, WIDTH)
    assert np.abs(theirs.anomaly_map - ours.anomaly_map).max() <= 1e-3 * max(1.0, np.abs(ours.anomaly_map).max())
    assert abs(theirs.score - ours.score) <= 1e-3 * max(1.0, abs(ours.score))


class BorderLover(AnomalyModel):
    """A map that is largest where the image is black: exactly what a zero border looks like."""

    def predict(self, images, class_ids=None):
        maps = 1.0 - images.mean(1)
        return ModelOutput(maps, maps.flatten(1).amax(1))


@pytest.mark.parametrize("tiling", [None, 64])
def test_the_border_never_shows_in_a_map_or_a_score(tiling):
    image = torch.full((3, 60, 200), 0.7)
    image[:, 30, 100] = 0.6  # the image's own most anomalous pixel: map 0.4
    fitted, box = fit(image, (128, 128), "keep_aspect")
    assert box != Box(0, 0, 128, 128)
    viewing = Viewing(resize="keep_aspect", tiling=None if tiling is None else TileGrid(tiling, 48))
    network = torch_network(BorderLover().eval(), torch.device("cpu"))
    maps, scores = score_canvases(network, [fitted.numpy()], [box], np.zeros(1), viewing, 4)
    maps = [torch.from_numpy(m) for m in maps]
    border = ~valid_mask((128, 128), box)
    inside = maps[0][~border]
    assert float(scores[0]) == pytest.approx(float(inside.max()))
    assert float(scores[0]) < 0.9  # the border would score 1.0
    assert (maps[0][border] == inside.min()).all()


@pytest.mark.parametrize(("extra", "key"), [
    (["--data.resize=none"], "data.resize"),
    (["--data.tiling={kind: tiles, tile: 64, stride: 65}"], "data.tiling.stride"),
    (["--data.image_size=[128, 64, 32]"], "data.image_size"),
    (["--data.resize=keep_aspect", "--eval.map_standardization=position"], "eval.map_standardization"),
])
def test_settings_that_do_not_fit_together_name_their_key(tmp_path, extra, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _config(tmp_path, tmp_path, *extra)


def test_a_square_only_model_refuses_a_rectangle_and_says_what_to_do(tmp_path, strips):
    cfg = load_config(None, ["--model.name=vq_e", "--data.image_size=[64, 128]",
                             f"--data.sources=[{{layout: folder, root: {strips}}}]", f"--output_dir={tmp_path}"])
    with pytest.raises(ConfigError, match="needs square inputs.*tiling"):
        run(cfg)
