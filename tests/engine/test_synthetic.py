"""The synthetic-defect ladder: each kind changes one patch of the size, shape and source it says."""

import numpy as np
import pytest
import torch

from defectscope.engine import run
from defectscope.engine.synthetic import (
    LADDER,
    choose_by_ladder,
    donor_indices,
    ladder_criterion,
    paste_defects,
    synthetic_scores,
)
from helpers.runs import tiny_config, tiny_config_file  # noqa: F401 - fixtures


def changed_box(x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    rows, cols = torch.nonzero((y != x).any(dim=0), as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


def test_scar_is_thin_and_cut_from_the_same_image():
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(0))
    y = paste_defects(x, torch.Generator().manual_seed(2), LADDER["scar"])
    for k in range(4):
        h, w = changed_box(x[k], y[k])
        assert min(h, w) <= 64 // 32 and max(h, w) <= 64 // 4
    # a constant image pasted onto itself changes only by the contrast factor, never to another image's value
    flat = torch.stack([torch.full((3, 64, 64), v) for v in (0.2, 0.4)])
    z = paste_defects(flat, torch.Generator().manual_seed(3), LADDER["scar"])
    for k, v in enumerate((0.2, 0.4)):
        allowed = torch.tensor([v, v * 0.75, v * 1.25])
        assert all(torch.isclose(allowed, u).any() for u in torch.unique(z[k]))
        assert len(torch.unique(z[k])) == 2  # the scar is there, and only one factor is used

def test_faint_blends_half_of_the_next_image_into_a_small_patch():
    a, b = torch.zeros(3, 64, 64), torch.ones(3, 64, 64)
    y = paste_defects(torch.stack([a, b]), torch.Generator().manual_seed(0), LADDER["faint"])
    h, w = changed_box(a, y[0])
    assert 64 // 16 <= min(h, w) and max(h, w) <= 64 // 8
    assert torch.allclose(torch.unique(y[0]), torch.tensor([0.0, 0.5]))


def test_the_default_kind_is_the_rectangle_and_draws_are_reproducible():
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    once = paste_defects(x, torch.Generator().manual_seed(1))
    assert torch.equal(once, paste_defects(x, torch.Generator().manual_seed(1), LADDER["rectangle"]))
    assert not torch.equal(once, paste_defects(x, torch.Generator().manual_seed(5)))


def test_ladder_criterion_is_the_share_above_each_class_maximum(tiny_config):  # noqa: F811
    fitted = run(tiny_config("mean_image", overrides=["--data.validation_fraction", "0.5"]), evaluate_test=False)
    device = torch.device("cpu")
    found = ladder_criterion(fitted.model, fitted.bundle.validation, device, 8, seed=3)
    clean, pasted, classes = synthetic_scores(fitted.model, fitted.bundle.validation, device, 8, 3, LADDER)
    assert found["held_out"] == len(clean) >= 2
    for name, scores in pasted.items():  # brute force: every pasted image against every clean one of its class
        shares = [sum(all(p > c for c in clean[classes == k]) for p in scores[classes == k]) / (classes == k).sum()
                  for k in np.unique(classes)]
        assert found[f"{name}_caught"] == pytest.approx(np.mean(shares))
    assert found["caught"] == pytest.approx(np.mean([found[f"{n}_caught"] for n in LADDER]))
    # the pairs come from the held-out set, not the batch: another batch size pastes the same defects
    _, again, _ = synthetic_scores(fitted.model, fitted.bundle.validation, device, 1, 3, LADDER)
    assert all(np.allclose(again[name], pasted[name]) for name in LADDER)


def test_donors_are_the_next_image_of_the_same_class():
    class Items:
        class_ids = {"a": 0, "b": 1}
        records = [type("R", (), {"category": c})() for c in "abaab"]

        def __len__(self):
            return len(self.records)

    assert donor_indices(Items()) == [2, 4, 3, 0, 1]


def test_the_shipped_setting_stays_unless_another_wins_by_an_image_per_kind():
    def found(caught, auroc=0.9):
        return {"caught": caught, "auroc": auroc, "held_out": 20.0}

    assert choose_by_ladder({"shipped": found(0.50), "deep": found(0.54)}, "shipped") == "shipped"  # < 1/20
    assert choose_by_ladder({"shipped": found(0.50), "deep": found(0.55), "fine": found(0.60)}, "shipped") == "fine"
    assert choose_by_ladder({"shipped": found(0.60), "deep": found(0.30)}, "shipped") == "shipped"
    # equal catch: the AUROC decides among the challengers
    assert choose_by_ladder({"shipped": found(0.2), "a": found(0.5, 0.8), "b": found(0.5, 0.95)}, "shipped") == "b"
