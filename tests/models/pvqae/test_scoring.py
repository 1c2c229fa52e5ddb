import torch

from defectscope.models.pvqae.anomaly_map import budget_score, combine_scores, pixel_budget
from defectscope.models.pvqae.discriminator import PatchDiscriminator, adaptive_weight, generator_loss, hinge_d_loss


def test_budget_score_is_the_cross_entropy_of_the_dynamic_level_under_the_prior():
    probs = torch.tensor([[0.7, 0.2, 0.1]]).reshape(1, 3, 1, 1)
    assert torch.allclose(budget_score(torch.tensor([[[0]]]), probs), -torch.log(torch.tensor(0.7)))
    assert budget_score(torch.tensor([[[2]]]), probs) > budget_score(torch.tensor([[[0]]]), probs)
    up = pixel_budget(torch.tensor([[[1.0, 2.0]]]), (4, 8))
    assert up.shape == (1, 4, 8) and up[0, :, :4].eq(1).all() and up[0, :, 4:].eq(2).all()


def test_product_is_zero_where_either_term_is_zero_and_the_variants_are_not():
    budget = torch.tensor([[[0.0, 1.0]]])
    rec = torch.tensor([[[2.0, 0.0]]])
    assert combine_scores(budget, rec, "product").eq(0).all()
    assert combine_scores(budget, rec, "one_plus_product")[0, 0, 0] == 2.0
    assert combine_scores(budget, rec, "sum")[0, 0, 1] > 0


def test_hinge_losses_and_adaptive_weight():
    assert hinge_d_loss(torch.full((4,), 2.0), torch.full((4,), -2.0)) == 0  # confident and right
    assert hinge_d_loss(torch.full((4,), -1.0), torch.full((4,), 1.0)) == 2.0
    disc = PatchDiscriminator(3, 8, 2)
    assert disc(torch.rand(2, 3, 32, 32)).shape[0] == 2
    layer = torch.nn.Conv2d(3, 3, 1)
    out = layer(torch.rand(2, 3, 32, 32))
    w = adaptive_weight(out.pow(2).mean(), generator_loss(disc(out)), layer.weight, 0.8)
    assert w.ndim == 0 and w >= 0 and not w.requires_grad
