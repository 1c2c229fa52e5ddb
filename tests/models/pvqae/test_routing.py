import pytest
import torch

from defectscope.models.pvqae.routing import DynamicRouter, codes_per_image, gumbel_tau, one_hot_levels, route


def test_tau_anneals_from_start_to_end():
    assert gumbel_tau(0.0, 1.0, 0.1) == pytest.approx(1.0)
    assert gumbel_tau(1.0, 1.0, 0.1) == pytest.approx(0.1)
    assert 0.1 < gumbel_tau(0.5, 1.0, 0.1) < 1.0
    assert gumbel_tau(0.5, 1.0, 1.0) == pytest.approx(1.0)  # DQ-VAE's constant τ


def test_inference_routing_is_the_argmax_and_training_is_one_hot_with_gradients():
    torch.manual_seed(0)
    router = DynamicRouter(channels=4, num_levels=3, hidden=8)
    features = [torch.randn(2, 4, 8, 8, requires_grad=True), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    hard = router(features, sample=False)
    assert torch.equal(hard.levels, hard.logits.argmax(1))
    assert torch.equal(hard.scores, one_hot_levels(hard.levels, 3))
    soft = router(features, tau=0.5, hard=True, sample=True)
    assert torch.allclose(soft.scores.sum(1), torch.ones(2, 2, 2))
    assert set(soft.scores.unique().tolist()) <= {0.0, 1.0}
    (soft.scores * torch.arange(3.0)[None, :, None, None]).sum().backward()
    assert features[0].grad is not None and features[0].grad.abs().sum() > 0  # pooled finest level reaches the MLP


def test_route_takes_each_cell_from_its_level_on_the_finest_grid():
    codes = [torch.full((1, 2, 4, 4), 1.0), torch.full((1, 2, 2, 2), 2.0), torch.full((1, 2, 1, 1), 3.0)]
    levels = torch.tensor([[[2]]])
    routed = route(codes, one_hot_levels(levels, 3))
    assert routed.shape == (1, 2, 4, 4) and torch.all(routed == 3.0)
    codes = [
        torch.arange(16.0).reshape(1, 1, 4, 4),
        torch.arange(4.0).reshape(1, 1, 2, 2) + 100,
        torch.zeros(1, 1, 1, 1),
    ]
    routed = route(codes, one_hot_levels(torch.tensor([[[1]]]), 3))
    assert routed[0, 0, 0, 0] == 100 and routed[0, 0, 0, 1] == 100 and routed[0, 0, 3, 3] == 103  # nearest up


def test_codes_per_image_counts_finer_cells_as_more_codes():
    levels = torch.tensor([[[0, 1], [2, 2]]])
    assert codes_per_image(levels, 3).item() == 16 + 4 + 1 + 1


def test_extra_inputs_reach_the_router_and_must_match_its_width():
    torch.manual_seed(0)
    router = DynamicRouter(channels=4, num_levels=3, hidden=8, extra_channels=1)
    features = [torch.randn(2, 4, 8, 8), torch.randn(2, 4, 4, 4), torch.randn(2, 4, 2, 2)]
    low, high = torch.zeros(2, 1, 2, 2), torch.ones(2, 1, 2, 2)
    assert not torch.allclose(router(features, sample=False, extra=low).logits,
                              router(features, sample=False, extra=high).logits)
    with pytest.raises(ValueError, match="1 extra input channels, got 0"):
        router(features, sample=False)
    with pytest.raises(ValueError, match="0 extra input channels, got 1"):
        DynamicRouter(4, 3, 8)(features, extra=low)
