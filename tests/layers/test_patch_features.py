import torch

from defectscope.layers.patch_features import jitter_features


def test_jitter_noise_scales_with_each_positions_norm():
    features = torch.ones(1, 4096, 1, 3) * torch.tensor([0.0, 1.0, 3.0])  # norms 0, 64, 192
    noise = jitter_features(features, 20.0, torch.Generator().manual_seed(0)) - features
    std = noise.std(dim=1)[0, 0]
    assert std[0] == 0  # a zero feature stays zero
    expected = 20.0 * torch.tensor([64.0, 192.0]) / 4096
    assert torch.allclose(std[1:], expected, rtol=0.05)


def test_no_jitter_is_the_identity():
    features = torch.randn(2, 8, 4, 4)
    assert jitter_features(features, 0.0) is features
