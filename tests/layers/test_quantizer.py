import torch

from defectscope.layers.quantizer import VectorQuantizer, kmeans


def test_straight_through_forward_is_nearest_code_and_backward_identity():
    torch.manual_seed(0)
    vq = VectorQuantizer(16, 4, ema=False, kmeans_init=False)
    z = torch.randn(2, 4, 3, 5, requires_grad=True)
    out = vq(z)
    flat = z.detach().permute(0, 2, 3, 1).reshape(-1, 4)
    brute = torch.cdist(flat, vq.codebook.detach()).argmin(1).reshape(2, 3, 5)
    assert torch.equal(out.indices, brute)
    assert torch.allclose(out.quantized, vq.codes_from_indices(out.indices))
    out.quantized.sum().backward()
    assert torch.allclose(z.grad, torch.ones_like(z))  # straight-through: d(quantized)/dz = 1


def test_losses_have_the_right_gradients():
    torch.manual_seed(0)
    vq = VectorQuantizer(8, 4, beta=0.25, ema=False, kmeans_init=False)
    z = torch.randn(1, 4, 2, 2, requires_grad=True)
    out = vq(z)
    out.loss.backward()
    assert z.grad.abs().sum() > 0  # commitment pulls the encoder
    assert vq.codebook.grad.abs().sum() > 0  # codebook loss moves the codes
    assert 1 <= out.live_codes <= 4 and 1 <= out.perplexity <= 4 + 1e-5


def test_eval_output_equals_decoding_the_indices():
    torch.manual_seed(1)
    vq = VectorQuantizer(32, 8).train()
    vq(torch.randn(4, 8, 6, 6))
    vq.eval()
    z = torch.randn(2, 8, 6, 6)
    out = vq(z)
    assert torch.equal(out.quantized, vq.codes_from_indices(out.indices))


def test_ema_moves_codes_towards_their_vectors_and_restarts_dead_codes():
    torch.manual_seed(0)
    vq = VectorQuantizer(4, 2, decay=0.5, kmeans_init=False, dead_code_threshold=0.5)
    vq.codebook.copy_(torch.tensor([[0.0, 0.0], [100.0, 100.0], [101.0, 100.0], [100.0, 101.0]]))
    vq.embed_sum.copy_(vq.codebook)
    z = torch.full((1, 2, 4, 4), 1.0)  # every vector at (1, 1): only code 0 is used
    for _ in range(5):
        vq(z)
    assert torch.allclose(vq.codebook[0], torch.ones(2), atol=0.1)
    # unused codes decayed below the threshold and were moved onto encoder outputs
    assert torch.allclose(vq.codebook[1:], torch.ones(3, 2), atol=1e-5)


def test_kmeans_init_places_codes_on_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    samples = torch.cat([c + 0.1 * torch.randn(50, 2) for c in centres])
    found = kmeans(samples, 3, iterations=20)
    # every cluster gets a centre of its own (none merged, none left between two clusters), and Lloyd's
    # fixed point puts it on the cluster's mean; the start is drawn by kmeans's own seeded generator
    means = samples.reshape(3, 50, 2).mean(1)
    nearest = torch.cdist(means, found).argmin(1)
    assert sorted(nearest.tolist()) == [0, 1, 2]
    assert torch.allclose(found[nearest], means, atol=1e-5)
    vq = VectorQuantizer(3, 2, kmeans_init=True)
    vq(samples.t().reshape(1, 2, 15, 10))
    assert bool(vq.initialised)
