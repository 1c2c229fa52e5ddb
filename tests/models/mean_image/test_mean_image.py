"""Mean image: exact statistics, per-class separation, where the map peaks, and its errors."""

import numpy as np
import pytest
import torch

from defectscope.models import create_model
from defectscope.models.mean_image.config import MeanImageConfig
from defectscope.models.mean_image.model import MeanImage

SIZE = 16
MAPS = ["zscore", "sqdiff"]


def normal_images(n, seed=0, size=SIZE, level=0.5):
    """A fixed pattern plus small noise: 'aligned parts' in miniature."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    pattern = level + 0.2 * torch.sin(x / 2) * torch.cos(y / 3)
    return (pattern + 0.03 * torch.randn(n, 3, size, size, generator=g)).clamp(0, 1)


def fitted(images, class_ids, num_classes=1, chunks=(4,), **config):
    model = MeanImage(MeanImageConfig(**config), SIZE, num_classes)
    start = 0
    for size in chunks:
        model.collect(images[start : start + size], class_ids[start : start + size], "statistics")
        start += size
    assert start == len(images), "the chunks must cover every image"
    model.finish_collection("statistics")
    return model.eval()


def test_statistics_are_exact_against_numpy_over_uneven_batches():
    images = normal_images(11)
    classes = torch.tensor([0, 1, 1, 0, 2, 1, 0, 0, 1, 2, 0])
    model = fitted(images, classes, num_classes=3, chunks=(3, 1, 5, 2))
    data = images.double().numpy()
    for k in range(3):
        pick = data[classes.numpy() == k]
        assert model.count[k].item() == len(pick)
        assert np.allclose(model.mean[k].numpy(), pick.mean(axis=0), atol=1e-7)
        # population std (ddof=0), then the floor
        expected = np.maximum(pick.std(axis=0), 1 / 255)
        assert np.allclose(model.std[k].numpy(), expected, atol=1e-7)


def test_the_maps_follow_their_formulas_without_smoothing():
    images = normal_images(8)
    query = normal_images(2, seed=1)
    for kind in MAPS:
        model = fitted(images, torch.zeros(8, dtype=torch.long), chunks=(8,), map=kind, smoothing_sigma=0.0)
        got = model.predict(query).anomaly_map.double().numpy()
        x, mu = query.double().numpy(), images.double().numpy().mean(axis=0)
        sd = np.maximum(images.double().numpy().std(axis=0), 1 / 255)
        want = np.sqrt((((x - mu) / sd) ** 2).sum(axis=1)) if kind == "zscore" else ((x - mu) ** 2).sum(axis=1)
        assert np.allclose(got, want, rtol=1e-4, atol=1e-5), kind


@pytest.mark.parametrize("kind", MAPS)
def test_the_class_mean_scores_zero_everywhere(kind):
    images = normal_images(6)
    model = fitted(images, torch.zeros(6, dtype=torch.long), chunks=(2, 4), map=kind)
    out = model.predict(model.mean[:1].clone())
    assert out.anomaly_map.abs().max() < 1e-5 and out.image_score.abs().max() < 1e-5


@pytest.mark.parametrize("kind", MAPS)
def test_the_map_peaks_on_a_bright_square_and_the_image_scores_above_normal(kind):
    size = 64
    images = normal_images(12, size=size)
    model = MeanImage(MeanImageConfig(map=kind), size)
    model.collect(images, torch.zeros(12, dtype=torch.long), "statistics")
    model.finish_collection("statistics")
    model.eval()
    normal = normal_images(2, seed=5, size=size)
    defect = normal.clone()
    defect[:, :, 36:44, 12:20] = 1.0
    a, b = model.predict(normal), model.predict(defect)
    for m in b.anomaly_map:
        y, x = divmod(int(m.argmax()), size)
        assert 36 <= y < 44 and 12 <= x < 20, (y, x)
    assert (b.image_score > a.image_score).all()


def test_statistics_of_each_class_are_kept_apart():
    dark, bright = normal_images(5, level=0.3), normal_images(5, seed=1, level=0.7)
    images = torch.cat([dark, bright])[[0, 5, 1, 6, 2, 7, 3, 8, 4, 9]]  # interleaved
    classes = torch.tensor([0, 1] * 5)
    model = fitted(images, classes, num_classes=2, chunks=(3, 3, 4))
    assert torch.allclose(model.mean[0], dark.mean(dim=0), atol=1e-6)
    assert torch.allclose(model.mean[1], bright.mean(dim=0), atol=1e-6)
    probe = normal_images(1, seed=9, level=0.3)  # a dark image: normal for class 0 only
    own = model.predict(probe, torch.tensor([0])).image_score
    other = model.predict(probe, torch.tensor([1])).image_score
    assert own * 5 < other


def test_a_flat_pixel_gets_the_std_floor_not_zero():
    images = normal_images(4)
    images[:, :, 0, 0] = 0.0  # never varies: σ would be 0
    model = fitted(images, torch.zeros(4, dtype=torch.long), chunks=(4,), std_floor=0.01, smoothing_sigma=0.0)
    assert torch.allclose(model.std[0, :, 0, 0], torch.full((3,), 0.01))
    probe = model.mean[:1].clone()
    probe[:, :, 0, 0] = 0.02  # two floors away on every channel
    assert model.predict(probe).anomaly_map[0, 0, 0].item() == pytest.approx((3 * 2.0**2) ** 0.5, rel=1e-4)


def test_smoothing_sigma_is_given_at_256_px_and_scales_with_the_image():
    assert MeanImage(MeanImageConfig(smoothing_sigma=4.0), 256).sigma == 4.0
    assert MeanImage(MeanImageConfig(smoothing_sigma=4.0), 32).sigma == 0.5


def test_the_checkpoint_carries_the_statistics():
    model = fitted(normal_images(4), torch.tensor([0, 1, 0, 1]), num_classes=2, chunks=(4,))
    state = model.state_dict()
    assert {"mean", "std", "count"} <= set(state)
    clone = create_model("mean_image", model.config, SIZE, num_classes=2)
    clone.load_state_dict(state)
    probe = normal_images(2, seed=3)
    assert torch.equal(clone.predict(probe, torch.tensor([0, 1])).anomaly_map,
                       model.predict(probe, torch.tensor([0, 1])).anomaly_map)


def test_bad_input_is_refused_with_a_clear_message():
    model = MeanImage(MeanImageConfig(), SIZE, num_classes=2)
    with pytest.raises(RuntimeError, match="no training images"):
        model.finish_collection("statistics")
    with pytest.raises(ValueError, match="built for images"):
        model.collect(torch.rand(2, 3, SIZE + 1, SIZE), torch.zeros(2, dtype=torch.long), "statistics")
    with pytest.raises(ValueError, match="class ids must be in 0…1"):
        model.collect(torch.rand(2, 3, SIZE, SIZE), torch.tensor([0, 2]), "statistics")
    model.collect(torch.rand(2, 3, SIZE, SIZE), torch.zeros(2, dtype=torch.long), "statistics")
    model.finish_collection("statistics")
    with pytest.raises(ValueError, match=r"class ids \[1\] had no training images"):
        model.predict(torch.rand(1, 3, SIZE, SIZE), torch.tensor([1]))
    with pytest.raises(ValueError, match="model.map"):
        MeanImage(MeanImageConfig(map="l1"), SIZE)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="std_floor"):
        MeanImage(MeanImageConfig(std_floor=0.0), SIZE)
