"""FADeR's parts on tiny tensors: mosaic, masks, U-Net skips, ranking loss, MSGMS, soft mask."""

import pytest
import torch
import torch.nn.functional as F

from defectscope.layers.msgms import msgms_map, msgms_similarity
from defectscope.models.fader.config import FADeRConfig
from defectscope.models.fader.loss import all_pairs, patch_errors, random_pairs, ranking_loss
from defectscope.models.fader.masks import GridSource, SpectralResidualSaliency, binary_patch_mask
from defectscope.models.fader.mosaic import mosaic, obfuscate
from defectscope.models.fader.predictor import attenuation_mask, normalise_per_image, tokenize
from defectscope.models.fader.unet import InpaintingUNet, scale_mask


def rand(*shape, seed=0):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


# --- mosaic -------------------------------------------------------------------------------


def test_mosaic_keeps_shape_and_block_means():
    x = rand(2, 3, 32, 48)
    y = mosaic(x, 8)
    assert y.shape == x.shape
    assert torch.allclose(F.avg_pool2d(y, 8), F.avg_pool2d(x, 8), atol=1e-6)
    block = y[0, 1, 8:16, 16:24]
    assert torch.allclose(block, block[0, 0].expand_as(block))  # every block is flat


def test_mosaic_rejects_sizes_not_divisible_by_the_scale():
    with pytest.raises(ValueError, match="mosaic scale 5"):
        mosaic(rand(1, 3, 32, 32), 5)


def test_obfuscate_changes_only_masked_patches():
    x = rand(1, 3, 32, 32)
    grid = torch.zeros(1, 1, 4, 4)
    grid[0, 0, 1, 2] = 1
    y = obfuscate(x, grid, 8)
    changed = (y != x).any(dim=1)[0]
    assert changed[8:16, 16:24].any() and not changed[:8].any() and not changed[:, :16].any()
    assert torch.allclose(y[..., 8:16, 16:24], mosaic(x, 8)[..., 8:16, 16:24])


# --- binary masks -------------------------------------------------------------------------


def test_binary_mask_covers_the_top_share_of_patches():
    scores = torch.zeros(1, 16, 16)
    scores[0, :4, :4] = 5.0  # exactly the first patch of a 4×4 grid
    mask = binary_patch_mask(scores, (4, 4), ratio=1 / 16)
    assert mask.shape == (1, 1, 4, 4) and mask.sum() == 1 and mask[0, 0, 0, 0] == 1
    assert binary_patch_mask(scores, (4, 4), ratio=0.0).sum() == 0


def test_grid_source_is_image_independent_and_binary():
    src = GridSource((8, 8), ratio=0.25)
    a, b = src(rand(2, 3, 32, 32)), src(rand(2, 3, 32, 32, seed=1))
    assert torch.equal(a, b)
    mask = binary_patch_mask(a, (8, 8), 0.25, binary=src.binary)
    assert mask.sum() / mask.numel() == pytest.approx(0.25)


def test_spectral_residual_saliency_finds_an_odd_spot():
    x = 0.45 + 0.1 * rand(1, 3, 64, 64)  # a textured normal surface
    x[..., 40:46, 10:16] = 1.0
    sal = SpectralResidualSaliency(64)(x)
    mask = binary_patch_mask(sal, (8, 8), ratio=2 / 64)
    assert mask[0, 0, 5, 1] == 1  # the patch holding the spot (rows 40–47, cols 8–15)


# --- U-Net and mask scaling ---------------------------------------------------------------


def test_unet_output_shape_and_range():
    net = InpaintingUNet(FADeRConfig(channels=(4, 8, 8, 8, 8)))
    y = net(rand(2, 3, 64, 64) * 2 - 1)
    assert y.shape == (2, 3, 64, 64) and y.abs().max() <= 1


def test_mask_reaches_every_skip_at_its_resolution():
    """A zero mask must change the output through the skips; shapes per depth are H/2..H/16."""
    cfg = FADeRConfig(channels=(4, 8, 8, 8, 8))
    net = InpaintingUNet(cfg).eval()
    feats = net.encoder(rand(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [32, 16, 8, 4, 2]
    seen = []
    for skip in feats[:-1]:
        seen.append(tuple(scale_mask(torch.ones(1, 1, 8, 8), skip.shape[-2:]).shape[-2:]))
    assert seen == [(32, 32), (16, 16), (8, 8), (4, 4)]
    with torch.no_grad():
        plain = net.decoder(feats, None)
        ones = net.decoder(feats, torch.ones(1, 1, 8, 8))
        zeros = net.decoder(feats, torch.zeros(1, 1, 8, 8))
    assert torch.allclose(plain, ones) and not torch.allclose(plain, zeros)


def test_nearest_scaling_keeps_patch_values_and_bilinear_blends():
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    near = scale_mask(mask, (8, 8), "nearest")
    assert set(near.unique().tolist()) == {0.0, 1.0} and near[0, 0, :4, :4].eq(1).all()
    down = scale_mask(torch.arange(16.0).reshape(1, 1, 4, 4), (2, 2), "nearest")
    assert set(down.flatten().tolist()) <= set(range(16))  # nearest picks values, never averages
    bil = scale_mask(mask, (8, 8), "bilinear")
    assert ((bil > 0) & (bil < 1)).any()  # values leak across the patch border


# --- ranking loss -------------------------------------------------------------------------


def test_ranking_loss_sign_and_margin():
    target = torch.tensor([[2.0, 1.0]])  # l_0 > l_1
    right = torch.tensor([[3.0, 0.0]])  # l̂_0 − l̂_1 = 3 > ξ: no loss
    assert ranking_loss(right, target, margin=1.0) == 0
    close = torch.tensor([[0.5, 0.0]])  # right order but inside the margin: ξ − 0.5
    assert ranking_loss(close, target, margin=1.0).item() == pytest.approx(0.5)
    wrong = torch.tensor([[0.0, 2.0]])  # wrong order: ξ + 2
    assert ranking_loss(wrong, target, margin=1.0).item() == pytest.approx(3.0)
    ties = torch.tensor([[1.0, 1.0]])  # 𝟙 = −1 when l_i ≤ l_j
    assert ranking_loss(torch.tensor([[0.0, 2.0]]), ties, margin=1.0) == 0


def test_ranking_loss_gradient_pushes_toward_the_true_order():
    target = torch.tensor([[0.0, 1.0, 2.0]])
    pred = torch.zeros(1, 3, requires_grad=True)
    ranking_loss(pred, target, margin=1.0).backward()
    assert pred.grad[0, 2] < 0 < pred.grad[0, 0]  # gradient descent raises l̂_2, lowers l̂_0


def test_pairs_are_distinct_and_complete():
    i, j = random_pairs(5, 200, 3, torch.Generator().manual_seed(0))
    assert (i != j).all() and i.shape == (3, 200)
    a, b = all_pairs(4, 2)
    assert a.shape == (2, 6) and (a < b).all()


def test_patch_errors_and_tokens_follow_the_same_grid():
    x, y = torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 16)
    y[..., 8:, :8] = 1.0  # bottom-left patch of a 2×2 grid of 8×8 patches
    err = patch_errors(x, y, 8)
    assert err.tolist() == [[0.0, 0.0, 1.0, 0.0]]
    tokens = tokenize(y, 8)
    assert tokens.shape == (1, 4, 3 * 64) and tokens[0, 2].eq(1).all() and tokens[0, 0].eq(0).all()


# --- soft mask ----------------------------------------------------------------------------


def test_soft_mask_range_and_order():
    pred = torch.tensor([[0.5, 3.0, -1.0, 1.0]])
    mask = attenuation_mask(pred, (2, 2), "soft")
    assert mask.shape == (1, 1, 2, 2)
    assert mask.min() == 0 and mask.max() == 1
    assert mask.flatten().argmin() == 1 and mask.flatten().argmax() == 2  # worst patch attenuated most
    assert torch.equal(normalise_per_image(torch.full((1, 4), 7.0)), torch.zeros(1, 4))
    assert attenuation_mask(torch.full((1, 4), 7.0), (2, 2)).eq(1).all()  # nothing stands out: keep all


def test_hard_mask_is_binary():
    mask = attenuation_mask(torch.tensor([[0.0, 1.0, 0.6, 0.4]]), (2, 2), "hard", threshold=0.5)
    assert mask.flatten().tolist() == [1.0, 0.0, 0.0, 1.0]


# --- MSGMS --------------------------------------------------------------------------------


def test_msgms_of_an_image_with_itself_is_zero():
    x = rand(2, 3, 64, 64)
    assert torch.allclose(msgms_map(x, x), torch.zeros(2, 64, 64), atol=1e-6)
    assert torch.allclose(msgms_similarity(x, x), torch.ones(2, 1, 64, 64), atol=1e-6)


def test_msgms_map_is_aligned_with_the_change():
    x = torch.full((1, 3, 64, 64), 0.5)
    y = x.clone()
    y[..., 20:28, 36:44] = 0.9
    amap = msgms_map(x, y, mean_filter=1)
    assert amap.shape == (1, 64, 64) and amap.min() >= 0 and amap.max() <= 1
    peak = torch.nonzero(amap[0] == amap[0].max())[0].tolist()
    assert 17 <= peak[0] <= 30 and 33 <= peak[1] <= 46
    assert amap[0, :8, :8].max() < 1e-6  # far corners untouched
