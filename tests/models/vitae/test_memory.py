import math

import pytest
import torch

from defectscope.models.vitae.memory import Memory, addressing_entropy, hard_shrink


def test_shrinkage_keeps_weights_non_negative_summing_to_one_and_zeroes_those_below_lambda():
    torch.manual_seed(0)
    w = torch.softmax(torch.randn(64, 50) * 2, dim=-1)
    lam = 1 / 50
    shrunk = hard_shrink(w, lam, 1e-12)
    assert (shrunk >= 0).all()
    assert torch.allclose(shrunk.sum(-1), torch.ones(64), atol=1e-6)
    assert (shrunk[w < lam] == 0).all() and (shrunk[w > lam + 1e-3] > 0).all()
    # above the threshold the shrinkage keeps w itself (up to ε), so the ratios survive renormalising
    kept = w * (w > lam)
    assert torch.allclose(shrunk, kept / kept.sum(-1, keepdim=True), atol=1e-6)


def test_uniform_weights_shrink_to_zero_without_nans():
    w = torch.full((3, 10), 0.1)
    shrunk = hard_shrink(w, 0.1, 1e-12)
    assert torch.isfinite(shrunk).all() and (shrunk == 0).all()


def test_entropy_is_zero_for_one_item_and_log_n_for_uniform():
    one_hot = torch.eye(8)
    assert addressing_entropy(one_hot) == pytest.approx(0.0, abs=1e-6)
    assert addressing_entropy(torch.full((4, 8), 1 / 8)) == pytest.approx(math.log(8), rel=1e-5)


def test_read_is_the_weighted_sum_of_items_with_sparse_weights():
    torch.manual_seed(0)
    memory = Memory(items=100, dim=32, temperature=0.05)
    features = torch.randn(2, 32, 4, 5)
    out = memory(features)
    assert out.features.shape == (2, 32, 4, 5) and out.weights.shape == (2, 4, 5, 100)
    assert torch.allclose(out.weights.sum(-1), torch.ones(2, 4, 5), atol=1e-5)
    manual = torch.einsum("bhwn,nc->bchw", out.weights, memory.items)
    assert torch.allclose(out.features, manual, atol=1e-5)
    assert (out.weights == 0).float().mean() > 0.3  # the shrinkage really drops items


def test_memory_output_is_not_zero_at_the_papers_lambda():
    """docs/methods.md §2 pitfall: with plain cosines every w ≈ 1/N; the read must still carry signal."""
    torch.manual_seed(0)
    for temperature in (1.0, 0.05):
        memory = Memory(items=500, dim=64, temperature=temperature)
        out = memory(torch.randn(1, 64, 3, 3))
        assert out.features.abs().amax() > 0
        assert torch.allclose(out.weights.sum(-1), torch.ones(1, 3, 3), atol=1e-5)
    # with the temperature the read is close to single items, not the average of the memory
    sharp = Memory(items=500, dim=64, temperature=0.05)
    with torch.no_grad():
        sharp.items[0] = torch.randn(64) * 5
    read = sharp(sharp.items[0].detach().view(1, 64, 1, 1)).weights.flatten()
    assert read[0] > 0.5


def test_gradients_reach_the_memory_items_through_read_and_addressing():
    torch.manual_seed(0)
    memory = Memory(items=20, dim=16, temperature=0.1)
    features = torch.randn(2, 16, 3, 3, requires_grad=True)
    out = memory(features)
    (out.features.pow(2).sum() + addressing_entropy(out.weights)).backward()
    assert memory.items.grad is not None and memory.items.grad.abs().sum() > 0
    assert features.grad is not None and features.grad.abs().sum() > 0  # the encoder learns through the addressing


def test_bad_settings_are_errors():
    with pytest.raises(ValueError, match="temperature"):
        Memory(items=10, dim=4, temperature=0)
