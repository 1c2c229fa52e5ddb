"""The training-health check: a model must rebuild held-out normals better than their mean image."""

import torch

from defectscope.data.sample import whole_sample
from defectscope.engine.health import class_mean_images, training_health
from defectscope.models.base import AnomalyModel


class Images(torch.utils.data.Dataset):
    def __init__(self, images, class_ids):
        self.images, self.class_ids = images, class_ids

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        size = self.images.shape[-1]
        return whole_sample(self.images[i], torch.zeros(1, size, size), 0, int(self.class_ids[i]), f"{i}.png")


class Rebuilds(AnomalyModel):
    """Rebuilds with a fixed rule, to check the verdict both ways."""

    def __init__(self, rule, note=None):
        super().__init__()
        self.rule, self.note = rule, note

    def reconstruction(self, images, class_ids=None):
        return self.rule(images, class_ids)

    def diagnose(self, images, class_ids=None):
        return {"level0_share": 1.0}

    def diagnosis_notes(self, numbers):
        return [self.note] if self.note else []


class CollapsesOnFirstImages(Rebuilds):
    """Level 0 everywhere on the first six held-out images, level 1 on the rest."""

    def __init__(self):
        super().__init__(lambda x, c: x)
        self.seen = 0

    def diagnose(self, images, class_ids=None):
        first = max(0, min(len(images), 6 - self.seen))
        self.seen += len(images)
        return {"level0_share": first / len(images), "level1_share": 1 - first / len(images)}

    def diagnosis_notes(self, numbers):
        return [f"collapsed at {numbers['level0_share']:.0%}"] if numbers["level0_share"] >= 0.99 else []


def data(seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(12, 3, 8, 8, generator=g)
    images[6:] = images[6:] * 0.2 + 0.8  # class 1 is bright: the per-class mean matters
    return images, torch.tensor([0] * 6 + [1] * 6)


def test_class_means_are_exact_over_batches():
    images, classes = data()
    means = class_mean_images(Images(images, classes), 2, batch_size=5)
    assert torch.allclose(means[0], images[:6].mean(0), atol=1e-6)
    assert torch.allclose(means[1], images[6:].mean(0), atol=1e-6)


def test_a_model_that_outputs_the_mean_image_is_flagged_and_a_good_one_is_not():
    images, classes = data()
    train, held_out = Images(images, classes), Images(*data(seed=1))
    means = class_mean_images(train, 2, 4)
    lazy = training_health(Rebuilds(lambda x, c: means[c]), train, held_out, 2, 4, torch.device("cpu"))
    assert lazy["heldout_loss"] == lazy["mean_image_loss"] and "no better than" in lazy["warnings"][0]
    good = training_health(Rebuilds(lambda x, c: x), train, held_out, 2, 4, torch.device("cpu"))
    assert good["heldout_loss"] == 0 and good["warnings"] == []


def test_the_models_own_diagnosis_is_reported_once():
    images, classes = data()
    ds = Images(images, classes)
    health = training_health(Rebuilds(lambda x, c: x, note="routing collapsed"), ds, ds, 2, 4, torch.device("cpu"))
    assert health["level0_share"] == 1.0 and health["warnings"] == ["routing collapsed"]


def test_the_diagnosis_is_of_every_held_out_image_not_of_one_batch():
    # batches of 4 over 12 images: the first batch alone is all level 0; the whole set is half
    images, classes = data()
    ds = Images(images, classes)
    health = training_health(CollapsesOnFirstImages(), ds, ds, 2, 4, torch.device("cpu"))
    assert health["level0_share"] == 0.5 and health["level1_share"] == 0.5
    assert health["warnings"] == []
