import pytest
import torch
from torch import nn

from defectscope.models.vitae.config import ViTAEConfig
from defectscope.models.vitae.decoder import Decoder, decoder_strides
from defectscope.models.vitae.network import ViTAutoEncoder, ViTEncoder

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=4, memory_items=16, decoder_channels=(32, 16, 16, 8, 8))


def test_decoder_strides_resolve_six_layers_for_any_patch_size():
    assert decoder_strides(16) == [2, 2, 2, 2, 1, 1]
    assert decoder_strides(16, "start") == [1, 1, 2, 2, 2, 2]
    assert decoder_strides(8) == [2, 2, 2, 1, 1, 1]
    assert decoder_strides(64) == [2] * 6
    for bad in (12, 128, 0):
        with pytest.raises(ValueError, match="power of two"):
            decoder_strides(bad)


@pytest.mark.parametrize("size_keeping", ["end", "start"])
def test_decoder_has_six_transposed_convs_and_returns_the_image_size_in_tanh_range(size_keeping):
    decoder = Decoder(32, (16, 16, 8, 8, 8), patch_size=16, size_keeping=size_keeping)
    convs = [m for m in decoder.modules() if isinstance(m, nn.ConvTranspose2d)]
    norms = [m for m in decoder.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 6 and len(norms) == 5 and isinstance(decoder.layers[-1], nn.Tanh)
    y = decoder(torch.randn(2, 32, 2, 3) * 10)
    assert y.shape == (2, 3, 32, 48) and y.abs().max() <= 1
    with pytest.raises(ValueError, match="5 widths"):
        Decoder(32, (16, 8), patch_size=16)


def test_encoder_turns_patches_into_a_feature_map():
    cfg = ViTAEConfig(**TINY)
    encoder = ViTEncoder(cfg, image_size=32)
    assert encoder.pos_embed.shape == (1, 16 + 1, 32)  # N + 1 positions: the CLS token has one
    features = encoder(torch.randn(3, 3, 32, 32))
    assert features.shape == (3, 32, 4, 4)
    with pytest.raises(ValueError, match="not divisible by patch_size"):
        ViTEncoder(cfg, image_size=36)
    with pytest.raises(ValueError, match="num_heads"):
        ViTEncoder(ViTAEConfig(**{**TINY, "num_heads": 5}), image_size=32)


def test_a_patch_only_affects_its_own_token_before_attention_but_all_tokens_after():
    """Global context: changing one patch changes every token of the map (what the paper is after)."""
    torch.manual_seed(0)
    encoder = ViTEncoder(ViTAEConfig(**TINY), image_size=32).eval()
    x = torch.rand(1, 3, 32, 32)
    y = x.clone()
    y[..., :8, :8] = 1 - y[..., :8, :8]
    with torch.no_grad():
        diff = (encoder(x) - encoder(y)).abs().sum(dim=1)[0]
    assert (diff > 1e-6).all()


@pytest.mark.parametrize("memory,ca", [(False, False), (True, False), (False, True), (True, True)])
def test_ablation_switches_build_the_four_variants(memory, ca):
    net = ViTAutoEncoder(ViTAEConfig(**TINY, memory=memory, coord_attention=ca), image_size=32)
    assert (net.memory is not None) == memory and (net.coord_attention is not None) == ca
    out = net(torch.rand(2, 3, 32, 32) * 2 - 1)
    assert out.reconstruction.shape == (2, 3, 32, 32)
    assert (out.weights is not None) == memory
    if memory:
        assert out.weights.shape == (2, 4, 4, 16)
