"""PatchCore: greedy coreset, bank search, the paper's re-weighted score, and fitting."""

import numpy as np
import pytest
import torch

from defectscope.layers.backbones import BackboneConfig, BackboneWeightsError
from defectscope.models.patchcore.anomaly_map import reweighted_image_score
from defectscope.models.patchcore.config import PatchCoreConfig
from defectscope.models.patchcore.coreset import chunked_coreset, greedy_coreset, random_projection
from defectscope.models.patchcore.memory_bank import MemoryBank
from defectscope.models.patchcore.model import PatchCore


def test_greedy_coreset_picks_the_farthest_points_of_a_tiny_set():
    points = torch.tensor([[0.0, 0.0], [0.1, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 5.0]])
    # from (0,0): (10,10) is farthest; then (10,0) and (0,10) tie at 10, the lower index first
    assert greedy_coreset(points, 4, start=0).tolist() == [0, 4, 2, 3]
    assert greedy_coreset(points, 6, start=0).tolist() == list(range(6))  # k ≥ N keeps everything


def numpy_greedy(x, k, start):
    chosen = [start]
    nearest = np.linalg.norm(x - x[start], axis=1)
    while len(chosen) < k:
        chosen.append(int(np.argmax(nearest)))
        nearest = np.minimum(nearest, np.linalg.norm(x - x[chosen[-1]], axis=1))
    return chosen


def test_greedy_coreset_matches_a_numpy_reference():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(1))
    assert greedy_coreset(x, 40, start=7).tolist() == numpy_greedy(x.double().numpy(), 40, 7)


def test_projection_keeps_distances_roughly_and_applies_only_to_wider_features():
    x = torch.randn(200, 1024, generator=torch.Generator().manual_seed(2))
    y = random_projection(x, 128)
    assert y.shape == (200, 128) and random_projection(x[:, :64], 128).shape == (200, 64)
    ratio = torch.pdist(y) / torch.pdist(x)
    assert 0.8 < ratio.mean() < 1.2 and ratio.std() < 0.15


def test_chunked_coreset_keeps_the_ratio_of_every_block():
    x = torch.randn(1000, 8, generator=torch.Generator().manual_seed(3))
    keep = chunked_coreset(x, 0.1, chunk=300)
    assert len(keep) == 30 + 30 + 30 + 10 and len(set(keep.tolist())) == len(keep)
    assert ((keep[:30] < 300) & (keep[30:60] >= 300) & (keep[30:60] < 600)).all()
    assert len(chunked_coreset(x, 0.1, chunk=0)) == 100


def test_the_bank_streams_with_bounded_pending_features():
    bank = MemoryBank(4, ratio=0.5, chunk=10)
    for _ in range(7):
        bank.add(torch.randn(4, 4))
        assert bank._pending_rows < 10
    bank.finish()
    assert bank.patches_seen == 28 and len(bank.bank) == 5 + 5 + 4


def test_nearest_neighbours_match_brute_force_in_small_chunks():
    g = torch.Generator().manual_seed(4)
    bank = MemoryBank(6, ratio=1.0)
    bank.bank = torch.randn(50, 6, generator=g)
    queries = torch.randn(33, 6, generator=g)
    dist, index = bank.nearest(queries, k=3, budget=120)  # 2 queries per chunk
    ref = torch.cdist(queries, bank.bank).topk(3, largest=False)
    assert torch.equal(index, ref.indices)
    assert torch.allclose(dist, ref.values, atol=1e-5)


def test_faiss_search_finds_the_same_neighbours_as_torch():
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    g = torch.Generator().manual_seed(5)
    exact, fast = MemoryBank(8, ratio=1.0), MemoryBank(8, ratio=1.0, search="faiss")
    exact.bank = fast.bank = torch.randn(300, 8, generator=g)
    queries = torch.randn(40, 8, generator=g)
    for k in (1, 9):
        (d_ref, i_ref), (d, i) = exact.nearest(queries, k=k), fast.nearest(queries, k=k)
        assert torch.equal(i, i_ref) and torch.allclose(d, d_ref, atol=1e-4)
    fast.bank = torch.randn(300, 8, generator=g)  # a new bank of the same size is a new index
    assert torch.equal(fast.nearest(queries)[1], torch.cdist(queries, fast.bank).argmin(dim=1, keepdim=True))


def test_reweighting_follows_equation_7():
    bank = MemoryBank(2, ratio=1.0)
    bank.bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [5.0, 5.0]])
    flat = torch.tensor([[[0.1, 0.0], [3.0, 0.0]]])  # two test patches; the second is the worst
    dist, index = bank.nearest(flat[0], k=1)
    scores, index = dist.view(1, 1, 2), index.view(1, 1, 2)
    s_star = 2.0  # (3, 0) to its nearest bank patch m* = (1, 0)
    # N_3(m*) = m* itself, (0, 0) and (0, 1); distances from (3, 0): 2, 3, √10
    d = torch.tensor([2.0, 3.0, 10**0.5])
    expected = (1 - torch.softmax(d, 0)[0]) * s_star
    got = reweighted_image_score(scores, index, flat, bank, neighbours=3)
    assert torch.allclose(got, expected.view(1))
    assert torch.allclose(reweighted_image_score(scores, index, flat, bank, neighbours=1), torch.tensor([s_star]))


def tiny(**kw):
    return PatchCore(PatchCoreConfig(backbone=BackboneConfig("mobilenet_v2", pretrained=False), **kw), image_size=64)


def fit(model, images):
    with torch.no_grad():
        for i in range(0, len(images), 2):
            model.collect(images[i : i + 2], torch.zeros(2, dtype=torch.long), "memory_bank")
    model.finish_collection("memory_bank")


def textured(n, seed):
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    base = 0.5 + 0.2 * torch.sin(x / 3) * torch.cos(y / 5)
    return (base + 0.02 * torch.randn(n, 3, 64, 64, generator=g)).clamp(0, 1)


def test_a_training_image_scores_about_zero_with_the_full_bank():
    torch.manual_seed(0)
    model = tiny(coreset_ratio=1.0)
    train = textured(4, 0)
    fit(model, train)
    assert len(model.memory.bank) == 4 * 8 * 8  # stride 8 at 64 px
    defect = train[:1].clone()
    defect[:, :, 20:36, 20:36] = 1.0
    seen, anomalous = model.predict(train[:1]), model.predict(defect)
    assert seen.image_score.item() < 1e-3 * anomalous.image_score.item()
    assert seen.anomaly_map.max() < 1e-3 * anomalous.anomaly_map.max()
    peak = divmod(int(anomalous.anomaly_map[0].argmax()), 64)
    assert 12 <= peak[0] <= 44 and 12 <= peak[1] <= 44  # the map points at the square


def test_a_smaller_coreset_scores_training_images_higher_but_still_below_defects():
    torch.manual_seed(0)
    train = textured(8, 1)
    full, small = tiny(coreset_ratio=1.0), tiny(coreset_ratio=0.1)
    fit(full, train)
    fit(small, train)
    assert len(small.memory.bank) == round(0.1 * 8 * 64)
    defect = train[:1].clone()
    defect[:, :, 20:36, 20:36] = 1.0
    assert small.predict(train[:1]).image_score > full.predict(train[:1]).image_score
    assert small.predict(defect).image_score > small.predict(train[:1]).image_score


def test_refitting_starts_a_new_bank():
    model = tiny(coreset_ratio=1.0)
    fit(model, textured(2, 0))
    fit(model, textured(4, 0))
    assert len(model.memory.bank) == 4 * 64


def test_predicting_before_fitting_says_so():
    with pytest.raises(RuntimeError, match="memory bank is empty"):
        tiny().predict(torch.rand(1, 3, 64, 64))


def test_collecting_without_the_weights_file_names_it(tmp_path):
    backbone = BackboneConfig(path=str(tmp_path / "nothing.safetensors"))
    model = PatchCore(PatchCoreConfig(backbone=backbone), image_size=64)
    with pytest.raises(BackboneWeightsError, match=r"nothing\.safetensors.*model\.backbone\.path"):
        model.collect(torch.rand(2, 3, 64, 64), torch.zeros(2, dtype=torch.long), "memory_bank")
