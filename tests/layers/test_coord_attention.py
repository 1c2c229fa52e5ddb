import torch

from defectscope.layers.coord_attention import CoordAttention


def test_shape_is_preserved_and_gradients_flow():
    torch.manual_seed(0)
    block = CoordAttention(64, reduction=32)
    x = torch.randn(2, 64, 6, 9, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    y.sum().backward()
    assert x.grad is not None and all(p.grad is not None for p in block.parameters())


def test_the_gate_factorises_into_a_row_and_a_column_term_in_zero_one():
    """y / x = a_h[c, i] · a_w[c, j]: log of the gate is additive in row and column."""
    torch.manual_seed(0)
    block = CoordAttention(16).eval()
    x = torch.rand(1, 16, 5, 7) + 0.5
    with torch.no_grad():
        gate = block(x) / x
    assert ((gate > 0) & (gate < 1)).all()
    log = gate.log()[0]
    interaction = log - log[:, :, :1] - log[:, :1, :] + log[:, :1, :1]
    assert interaction.abs().max() < 1e-5


def test_position_matters_unlike_plain_channel_attention():
    torch.manual_seed(0)
    block = CoordAttention(8, min_hidden=8).eval()
    x = torch.rand(1, 8, 6, 6)
    x[..., :3, :] += 2.0  # the top half differs from the bottom
    with torch.no_grad():
        gate = block(x) / x
    assert not torch.allclose(gate[..., 0, 0], gate[..., 5, 0])
