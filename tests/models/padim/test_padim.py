"""PaDiM: per-position Gaussians against a numpy reference, channel subset, fitting."""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import mahalanobis

from defectscope.layers.backbones import BackboneConfig
from defectscope.models.padim.config import PaDiMConfig
from defectscope.models.padim.gaussian import PositionGaussians
from defectscope.models.padim.model import PaDiM

RANDOM_MOBILENET = BackboneConfig("mobilenet_v2", pretrained=False)  # taps 24 + 32 + 96 channels


def test_mahalanobis_matches_a_numpy_reference():
    g = torch.Generator().manual_seed(0)
    positions, dim, n = 3, 4, 40
    mixing = torch.randn(positions, dim, dim, generator=g)
    x = torch.einsum("npd,pde->npe", torch.randn(n, positions, dim, generator=g), mixing) + 5.0  # far from 0
    gauss = PositionGaussians(positions, dim, regularisation=0.01)
    for chunk in x.split([7, 1, 20, 12]):  # streamed in uneven batches
        gauss.add(chunk)
    gauss.finish()
    queries = torch.randn(2, positions, dim, generator=g) + 5.0
    got = gauss.mahalanobis(queries)
    data = x.double().numpy()
    for p in range(positions):
        mean = data[:, p].mean(axis=0)
        cov = np.cov(data[:, p], rowvar=False) + 0.01 * np.eye(dim)  # the paper's Σ + εI
        assert np.allclose(gauss.mean[p].numpy(), mean, atol=1e-5)
        inv = np.linalg.inv(cov)
        assert np.allclose(gauss.inv_cov[p].numpy(), inv, rtol=1e-4, atol=1e-5)
        for b in range(2):
            ref = mahalanobis(queries[b, p].double().numpy(), mean, inv)
            assert got[b, p].item() == pytest.approx(ref, rel=1e-4)


def test_one_image_is_not_enough_for_a_covariance():
    gauss = PositionGaussians(2, 3)
    gauss.add(torch.randn(1, 2, 3))
    with pytest.raises(RuntimeError, match="at least 2"):
        gauss.finish()


def test_the_channel_subset_is_random_fixed_by_the_seed_and_stored():
    a = PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=50), 64)
    b = PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=50), 64)
    c = PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=50, seed=1), 64)
    assert torch.equal(a.channels, b.channels) and not torch.equal(a.channels, c.channels)
    assert len(set(a.channels.tolist())) == 50 and a.channels.max() < 24 + 32 + 96
    assert "channels" in a.state_dict()
    with pytest.raises(ValueError, match="n_features must be in 1…152"):
        PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=200), 64)


def test_padim_scores_a_pasted_square_above_the_training_images():
    torch.manual_seed(0)
    model = PaDiM(PaDiMConfig(backbone=RANDOM_MOBILENET, n_features=32), 64)
    g = torch.Generator().manual_seed(0)
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    train = (0.5 + 0.2 * torch.sin(x / 3) + 0.05 * torch.randn(16, 3, 64, 64, generator=g)).clamp(0, 1)
    with torch.no_grad():
        for i in range(0, 16, 4):
            model.collect(train[i : i + 4], torch.zeros(4, dtype=torch.long), "gaussians")
    model.finish_collection("gaussians")
    defect = train[:2].clone()
    defect[:, :, 20:36, 20:36] = 1.0
    normal, anomalous = model.predict(train[:2]), model.predict(defect)
    assert (anomalous.image_score > normal.image_score).all()
    assert normal.anomaly_map.shape == (2, 64, 64)
