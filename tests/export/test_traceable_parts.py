"""Model code changed so it traces into ONNX computes what it computed before."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from kornia.filters import box_blur, gaussian_blur2d

from defectscope.models.fader.masks import SpectralResidualSaliency
from defectscope.models.patchcore.memory_bank import MemoryBank


def saliency_with_fft(images: torch.Tensor, size: int = 64) -> torch.Tensor:
    """Hou & Zhang with torch.fft and complex numbers (the form ONNX cannot hold), in float64."""
    grey = F.interpolate(images.float().mean(dim=1, keepdim=True), size=(size, size), mode="area").double()
    spectrum = torch.fft.fft2(grey)
    log_amp = torch.log(spectrum.abs() + 1e-8)
    residual = log_amp - box_blur(log_amp, (3, 3), border_type="circular")
    saliency = torch.fft.ifft2(torch.exp(residual + 1j * torch.angle(spectrum))).abs().pow(2).float()
    sigma = size / 24
    k = 2 * int(3 * sigma) + 1
    return gaussian_blur2d(saliency, (k, k), (sigma, sigma), border_type="reflect")[:, 0]


def test_real_dft_saliency_equals_the_fft_one():
    images = torch.rand(3, 3, 96, 80, generator=torch.Generator().manual_seed(0))
    ref = saliency_with_fft(images)
    got = SpectralResidualSaliency(64)(images)
    assert got.dtype == torch.float32 and got.shape == (3, 64, 64)
    assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6 * float(ref.abs().max()))


def test_bank_search_in_one_block_equals_the_chunked_search(monkeypatch):
    """An ONNX trace searches the bank in one block; the same neighbours and distances as in chunks."""
    g = torch.Generator().manual_seed(0)
    bank = MemoryBank(8, ratio=1.0, chunk=0)
    bank.add(torch.randn(50, 8, generator=g))
    bank.finish()
    queries = torch.randn(37, 8, generator=g)
    chunked = bank.nearest(queries, k=3, budget=50 * 4)  # blocks of 4 queries
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    whole = bank.nearest(queries, k=3, budget=50 * 4)
    assert torch.equal(chunked[1], whole[1]) and torch.allclose(chunked[0], whole[0], atol=1e-6)
    brute = torch.cdist(queries, bank.bank).topk(3, largest=False)
    assert torch.equal(whole[1], brute.indices) and torch.allclose(whole[0], brute.values, atol=1e-5)
