import pytest
import torch

from defectscope.models.pvqae.prior import BudgetPriorTransformer, spiral_order


def test_spiral_goes_clockwise_from_the_outer_ring_inwards():
    assert spiral_order(3, 3).tolist() == [0, 1, 2, 5, 8, 7, 6, 3, 4]
    assert spiral_order(2, 3).tolist() == [0, 1, 2, 5, 4, 3]
    for h, w in [(4, 4), (5, 3), (1, 6), (8, 8)]:
        assert sorted(spiral_order(h, w).tolist()) == list(range(h * w))


def make_prior(mode="per_class", layers=1):
    torch.manual_seed(0)
    prior = BudgetPriorTransformer(3, (3, 3), num_classes=2, mode=mode, dim=16, heads=2, layers=layers).eval()
    with torch.no_grad():  # non-trivial positions so that the mask token differs per position
        prior.position.normal_()
    return prior


def test_flatten_and_unflatten_are_inverse():
    prior = make_prior()
    levels = torch.randint(0, 3, (2, 3, 3))
    assert torch.equal(prior.unflatten(prior.flatten(levels), (3, 3)), levels)


@pytest.mark.parametrize("layers", [1, 2])  # one block: the exact single-pass path; two: the copies
def test_batched_masked_prediction_equals_masking_one_position_at_a_time(layers):
    prior = make_prior(layers=layers)
    assert prior._single_block_exact() == (layers == 1)
    levels = torch.randint(0, 3, (2, 3, 3))
    classes = torch.tensor([0, 1])
    probs = prior.predict_each_masked(levels, classes)
    assert probs.shape == (2, 3, 3, 3)
    assert torch.allclose(probs.sum(1), torch.ones(2, 3, 3))
    sequence = prior.flatten(levels)
    for i in range(9):
        masked = sequence.clone()
        masked[:, i] = prior.mask_token
        expected = prior(masked, classes)[:, i].softmax(-1)  # (B, K) at spiral position i
        raster = prior.order[i].item()
        assert torch.allclose(probs[:, :, raster // 3, raster % 3], expected, atol=1e-5)


def test_class_token_matters_only_for_the_per_class_prior():
    levels = torch.randint(0, 3, (1, 3, 3))
    for mode, differ in [("per_class", True), ("universal", False)]:
        prior = make_prior(mode)
        a = prior.predict_each_masked(levels, torch.tensor([0]))
        b = prior.predict_each_masked(levels, torch.tensor([1]))
        assert (not torch.allclose(a, b)) == differ


def test_training_learns_a_constant_budget():
    torch.manual_seed(0)
    prior = BudgetPriorTransformer(3, (3, 3), 1, "universal", 16, 2, 1)
    opt = torch.optim.Adam(prior.parameters(), 1e-2)
    levels = torch.full((8, 3, 3), 2)
    levels[:, 1, 1] = 0  # the centre is always finest
    for _ in range(60):
        opt.zero_grad()
        prior.loss(levels, torch.zeros(8, dtype=torch.long), 0.3).backward()
        opt.step()
    probs = prior.eval().predict_each_masked(levels[:1], torch.zeros(1, dtype=torch.long))
    assert probs.argmax(1)[0].tolist() == levels[0].tolist()
