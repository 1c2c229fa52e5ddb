from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defectscope.engine.gallery import GalleryPlan, extra_panel, write_gallery
from defectscope.engine.predictions import Predictions
from defectscope.models import create_model
from defectscope.models.pvqae.config import PatchGAN, PerClassPrior, PVQAEConfig


class FakeDataset:
    def __init__(self, n, size):
        from defectscope.data.sample import whole_sample

        self.items = [whole_sample(torch.rand(3, size, size), torch.zeros(1, size, size), 0, 0, f"img{i}.png")
                      for i in range(n)]

    def __getitem__(self, i):
        return self.items[i]

    def __len__(self):
        return len(self.items)


def test_saved_pictures_show_the_models_own_maps_beside_the_anomaly_map(tmp_path):
    size = 32
    cfg = PVQAEConfig(channels=8, channel_mult=(1, 1, 2, 2), res_blocks=(1, 1, 1, 1), num_codes=8, code_dim=8,
                      router_hidden=8, prior=PerClassPrior(dim=16, heads=2), adversarial=PatchGAN(channels=8))
    model = create_model("pvqae", cfg, size).eval()
    data = FakeDataset(3, size)
    preds = Predictions(np.array([0.1, 0.5, 0.3]), np.random.rand(3, size, size).astype(np.float32),
                        np.zeros((3, size, size), bool), np.zeros(3, int), np.zeros(3, int),
                        [s.path for s in data.items], 1.0)
    plan = GalleryPlan(per_end=1, pictures=2)
    out = Path(write_gallery(model, preds, data, ["c"], tmp_path / "a", torch.device("cpu"), plan)["maps_dir"])
    pictures = sorted(out.glob("*.png"))
    assert pictures and len(list(out.glob("*.npy"))) == len(pictures)
    width = Image.open(pictures[0]).size[0]
    assert width == size * (3 + len(model.explain_maps(data[0].image[None])))  # input, map, truth + extras
    baseline = create_model("ae_ssim", None, size).eval()
    plain = Path(write_gallery(baseline, preds, data, ["c"], tmp_path / "b", torch.device("cpu"), plan)["maps_dir"])
    assert Image.open(sorted(plain.glob("*.png"))[0]).size[0] == 3 * size


def test_level_maps_keep_their_colours_and_scores_are_rescaled():
    levels = np.array([[0.0, 0.5], [1.0, 1.0]])
    assert np.array_equal(extra_panel(levels), extra_panel(levels[::-1])[::-1])
    scores = np.array([[0.0, 10.0], [20.0, 40.0]])
    assert extra_panel(scores)[1, 1].tolist() == extra_panel(scores / 40)[1, 1].tolist()


def test_one_pass_writes_the_gallery_and_the_pictures_of_the_same_ranking(tmp_path):
    size = 32
    model = create_model("ae_ssim", None, size).eval()
    data = FakeDataset(6, size)
    scores = np.array([0.6, 0.1, 0.5, 0.3, 0.2, 0.4])
    preds = Predictions(scores, np.random.rand(6, size, size).astype(np.float32), np.zeros((6, size, size), bool),
                        np.zeros(6, int), np.zeros(6, int), [s.path for s in data.items], 1.0)
    calls = []
    model.explain_maps = lambda images, class_ids: calls.append(1) or {}
    plan = GalleryPlan(per_end=1, pictures=4)
    written = write_gallery(model, preds, data, ["c"], tmp_path, torch.device("cpu"), plan)
    assert sorted(p.name.split("_", 1)[1] for p in Path(written["maps_dir"]).glob("*.png")) == [
        "img0.png", "img1.png", "img2.png", "img5.png"]  # three from the top, one from the bottom
    assert len(calls) == 4  # the gallery's two images are among the pictures: each explained once
