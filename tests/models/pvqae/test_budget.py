import math

import numpy as np
import pytest
import torch

from defectscope.models.pvqae.budget import (
    budget_loss,
    budget_penalty,
    budget_weight,
    haar_dwt2,
    level_costs,
    patch_detail,
    patch_entropy,
)


def test_haar_preserves_energy_and_matches_pywavelets():
    pywt = pytest.importorskip("pywt")
    x = torch.rand(2, 8, 8, dtype=torch.float64)
    coefficients = haar_dwt2(x, 3)
    assert torch.allclose(sum(c.pow(2).sum(dim=(1, 2, 3)) for c in coefficients), x.pow(2).sum(dim=(1, 2)))
    ours = haar_dwt2(x, 1)
    cA, (cH, cV, cD) = pywt.dwt2(x[0].numpy(), "haar")
    assert torch.allclose(ours[1][0, 0], torch.from_numpy(cA))
    # same sub-bands up to sign and order conventions
    ours_details = sorted(ours[0][0].abs().flatten(1).tolist())
    theirs = sorted(torch.from_numpy(np.abs(np.stack([cH, cV, cD]))).flatten(1).tolist())
    assert torch.allclose(torch.tensor(ours_details), torch.tensor(theirs))


def test_entropy_is_zero_for_flat_patches_and_high_for_texture():
    flat = torch.full((1, 3, 64, 64), 0.5)
    torch.manual_seed(0)
    texture = flat.clone()
    texture[..., 32:, 32:] = torch.rand(1, 3, 32, 32)  # one textured cell of the 2×2 grid
    h = patch_entropy(texture, (2, 2))
    assert h.shape == (1, 2, 2)
    assert torch.allclose(h[0, 0, 0], torch.tensor(0.0), atol=1e-6)
    assert h[0, 1, 1] > 0.8 and (h >= 0).all() and (h <= 1).all()
    with_mean = patch_entropy(texture, (2, 2), include_approximation=True)
    assert 0.05 < with_mean[0, 1, 1] < h[0, 1, 1]  # the mean holds most of the energy
    assert patch_entropy(torch.rand(1, 3, 32, 32) - 0.5, (1, 1)) > 0.8  # zero-mean noise: energy everywhere
    assert patch_entropy(torch.zeros(1, 3, 32, 32), (1, 1)).item() == 0.0
    with pytest.raises(ValueError, match="square powers of two"):
        patch_entropy(flat, (3, 3))


def test_costs_rise_by_alpha_per_finer_level_and_inverse_entropy():
    entropy = torch.tensor([[[0.5, 0.01]]])
    costs = level_costs(entropy, num_levels=3, alpha=2.0, floor=0.05)
    assert costs.shape == (1, 3, 1, 2)
    assert torch.allclose(costs[0, :, 0, 0], torch.tensor([8.0, 4.0, 2.0]))  # 1/0.5 · α^(K−1−k)
    assert torch.allclose(costs[0, 2, 0, 1], torch.tensor(20.0))  # floored at ε = 0.05
    relative = level_costs(entropy, 3, 2.0, 0.05, normalize=True)
    assert torch.allclose(relative[0, 2].mean(), torch.tensor(1.0))
    assert torch.allclose(relative[0, 0] / relative[0, 2], torch.tensor(4.0))


def test_budget_loss_is_the_mean_cost_of_the_chosen_levels():
    costs = torch.tensor([[[[4.0]], [[2.0]], [[1.0]]]])
    finest = torch.tensor([[[[1.0]], [[0.0]], [[0.0]]]])
    assert budget_loss(finest, costs).item() == 4.0
    assert budget_loss(finest.flip(1), costs).item() == 1.0


@pytest.mark.parametrize("schedule", ["linear", "cosine", "constant"])
def test_budget_weight_schedules(schedule):
    start, middle, end = (budget_weight(p, 1.25, schedule) for p in (0.0, 0.5, 1.0))
    assert end == pytest.approx(1.25)
    if schedule == "constant":
        assert start == middle == 1.25
    else:
        assert start == 0.0 and middle == pytest.approx(0.625)
    assert budget_weight(2.0, 1.25, schedule) == pytest.approx(1.25)
    assert math.isfinite(budget_weight(0.3, 1.25, schedule))


def test_budget_target_penalises_only_the_spend_above_it():
    spend = torch.tensor([0.5, 2.0, 3.5], requires_grad=True)
    assert torch.equal(budget_penalty(spend, 0.0), spend)  # no target: the paper's penalty
    penalty = budget_penalty(spend, 2.0)
    assert penalty.tolist() == [0.0, 0.0, 1.5]
    penalty.sum().backward()
    assert spend.grad.tolist() == [0.0, 0.0, 1.0]  # below the ceiling nothing pushes the router


def test_entropy_ranks_faint_noise_above_a_sharp_edge():
    """The paper's richness measure reads how evenly detail energy is spread, not how much
    structure there is: faint sensor noise is "rich", one sharp edge is "poor" (so dear to code
    finely); docs/results/pvqae.md, session 7."""
    torch.manual_seed(0)
    noise = (0.5 + 0.05 * torch.randn(1, 1, 32, 32)).expand(1, 3, 32, 32)
    edge = torch.zeros(1, 3, 32, 32)
    edge[..., 13:] = 1.0
    h_noise, h_edge = patch_entropy(noise, (1, 1)).item(), patch_entropy(edge, (1, 1)).item()
    assert h_noise > 0.8 and h_edge < 0.3


def test_detail_richness_is_each_cells_grey_standard_deviation():
    torch.manual_seed(0)
    images = torch.rand(2, 3, 16, 16)
    detail = patch_detail(images, (2, 2))
    grey = images.mean(dim=1)
    assert detail.shape == (2, 2, 2)
    assert torch.allclose(detail[1, 0, 1], grey[1, :8, 8:].std(unbiased=False))
    assert patch_detail(torch.full((1, 3, 16, 16), 0.3), (2, 2)).abs().max() < 1e-6  # flat: no detail
    with pytest.raises(ValueError, match="does not divide"):
        patch_detail(images, (3, 3))
