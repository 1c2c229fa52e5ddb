import torch

from defectscope.models.base import StepContext
from defectscope.models.vitae.anomaly_map import reconstruction_anomaly_map
from defectscope.models.vitae.config import ViTAEConfig
from defectscope.models.vitae.loss import vitae_loss
from defectscope.models.vitae.model import ViTAE

TINY = dict(patch_size=8, embed_dim=32, depth=2, num_heads=4, memory_items=16, decoder_channels=(32, 16, 16, 8, 8),
            ssim_window=7, smoothing_sigma=1.0)


def make(**overrides):
    torch.manual_seed(0)
    return ViTAE(ViTAEConfig(**{**TINY, **overrides}), image_size=32)


def images(n=2):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def test_loss_parts_follow_the_switches_and_the_weights():
    x = images()
    full = make().training_step(x, torch.zeros(2, dtype=torch.long), StepContext(0))
    assert set(full.parts) == {"l2", "ssim", "entropy"}
    p = full.parts
    assert torch.allclose(full.total, p["l2"] + p["ssim"] + 0.001 * p["entropy"], atol=1e-6)
    base = make(memory=False).training_step(x, torch.zeros(2, dtype=torch.long), StepContext(0))
    assert set(base.parts) == {"l2", "ssim"}


def test_a_perfect_reconstruction_costs_nothing_but_entropy_and_maps_to_zero():
    x = images()
    loss = vitae_loss(x, x, None, ViTAEConfig(ssim_window=7))
    assert loss.total.abs() < 1e-4
    for kind in ("l2_ssim", "l2", "ssim"):
        assert reconstruction_anomaly_map(x, x, kind, 1.0, 7, 1.0).abs().max() < 1e-4


def test_the_map_peaks_where_the_reconstruction_is_wrong():
    x = images(1)
    wrong = x.clone()
    wrong[..., 20:26, 4:10] = 1 - wrong[..., 20:26, 4:10]
    for kind in ("l2_ssim", "l2", "ssim"):
        m = reconstruction_anomaly_map(x, wrong, kind, 1.0, 7, 1.0)[0]
        row, col = divmod(int(m.argmax()), 32)
        assert 18 <= row <= 27 and 2 <= col <= 11, kind


def test_gradients_reach_the_memory_and_the_encoder_through_it():
    model = make()
    loss = model.training_step(images(), torch.zeros(2, dtype=torch.long), StepContext(0))
    loss.total.backward()
    net = model.network
    assert net.memory.items.grad is not None and net.memory.items.grad.abs().sum() > 0
    assert net.encoder.patch_embed.weight.grad.abs().sum() > 0
    assert net.coord_attention.to_h.weight.grad.abs().sum() > 0
    assert 0 < loss.metrics["mem_active"] <= 16


def test_predict_and_explain_maps_have_the_input_size():
    model = make().eval()
    with torch.no_grad():
        out = model.predict(images(3))
        extra = model.explain_maps(images(3))
    assert out.anomaly_map.shape == (3, 32, 32) and out.image_score.shape == (3,)
    assert set(extra) == {"reconstruction", "L2 error", "1 - SSIM"}
    assert all(v.shape == (3, 32, 32) for v in extra.values())


def test_the_full_model_overfits_one_tiny_image():
    torch.manual_seed(0)
    model = make(memory_temperature=0.05)
    x = torch.rand(1, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    x = torch.nn.functional.avg_pool2d(x, 3, 1, 1).expand(4, -1, -1, -1)  # some structure; 4 copies so
    # BatchNorm's unbiased running variance (over B·(H+W) values in coordinate attention) matches training
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    first = None
    for step in range(40):
        opt.zero_grad()
        loss = model.training_step(x, torch.zeros(4, dtype=torch.long), StepContext(step))
        loss.total.backward()
        opt.step()
        first = first if first is not None else float(loss.parts["l2"])
    assert float(loss.parts["l2"]) < 0.1 * first
    assert float(loss.parts["l2"]) < 0.005  # RMS error under 0.07 on a [0, 1] image
    with torch.no_grad():  # let BatchNorm's running statistics catch up with the last weights
        for _ in range(60):
            model.reconstruct(x)
    model.eval()
    with torch.no_grad():
        reconstruction, weights = model.reconstruct(x)
    assert float((reconstruction - x).pow(2).mean()) < 0.01
    assert (weights > 0).sum(-1).float().mean() < 16  # the read stays sparse
