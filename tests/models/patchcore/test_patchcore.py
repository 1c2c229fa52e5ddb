"""PatchCore: greedy coreset, bank search, the paper's re-weighted score, and fitting."""

import numpy as np
import pytest
import torch

from defectscope.config import ConfigError, build_config, config_from_yaml, config_to_yaml
from defectscope.layers.backbones import BackboneConfig, BackboneWeightsError
from defectscope.models.patchcore.anomaly_map import patch_scores, reweighted_image_score
from defectscope.models.patchcore.config import FaissSearch, HnswSearch, PatchCoreConfig, TorchSearch
from defectscope.models.patchcore.coreset import chunked_coreset, greedy_coreset, random_projection
from defectscope.models.patchcore.memory_bank import (
    MemoryBank,
    SearchUnavailable,
    check_search,
    exact_search,
    faiss_installed,
)
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
    exact, fast = MemoryBank(8, ratio=1.0), MemoryBank(8, ratio=1.0, search=FaissSearch())
    exact.bank = fast.bank = torch.randn(300, 8, generator=g)
    queries = torch.randn(40, 8, generator=g)
    for k in (1, 9):
        (d_ref, i_ref), (d, i) = exact.nearest(queries, k=k), fast.nearest(queries, k=k)
        assert torch.equal(i, i_ref) and torch.allclose(d, d_ref, atol=1e-4)
    fast.bank = torch.randn(300, 8, generator=g)  # a new bank of the same size is a new index
    assert torch.equal(fast.nearest(queries)[1], torch.cdist(queries, fast.bank).argmin(dim=1, keepdim=True))


def clustered(n, dim, generator, centres=40):
    """Points around a few dozen centres: a graph search with few links misses some neighbours."""
    middle = torch.randn(centres, dim, generator=generator) * 3
    return middle[torch.randint(centres, (n,), generator=generator)] + 0.3 * torch.randn(n, dim, generator=generator)


def test_hnsw_keeps_each_images_farthest_patch_exact():
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    g = torch.Generator().manual_seed(6)
    exact = MemoryBank(16, ratio=1.0)
    # a deliberately poor graph (2 links, 1 candidate), so its raw distances are often too far
    rough = MemoryBank(16, ratio=1.0, search=HnswSearch(links=2, candidates=1, build_candidates=2))
    exact.bank = rough.bank = clustered(2000, 16, g)
    features = clustered(6 * 64, 16, g).view(6, 8, 8, 16).permute(0, 3, 1, 2)
    features[:3, :, 2, 5] += 4.0  # a far patch in half the images
    raw, _ = rough.nearest_patches(features.permute(0, 2, 3, 1).reshape(-1, 16))
    ref_d, ref_i, _, _ = patch_scores(features, exact)
    got_d, got_i, _, _ = patch_scores(features, rough)
    assert (raw > ref_d.flatten() + 1e-4).sum() > 20  # the graph alone misses neighbours ...
    assert (raw.view(6, -1).amax(1) > ref_d.view(6, -1).amax(1) + 1e-4).any()  # ... including a farthest one
    assert (got_d >= ref_d - 1e-5).all()  # never nearer than the nearest
    flat_ref, flat_got = ref_d.view(6, -1), got_d.view(6, -1)
    assert torch.allclose(flat_got.amax(1), flat_ref.amax(1), atol=1e-5)
    worst = flat_got.argmax(1)
    assert torch.equal(got_i.view(6, -1)[torch.arange(6), worst], ref_i.view(6, -1)[torch.arange(6), worst])
    support = patch_scores(features, rough, neighbours=5).support  # Eq. 7's, found on the way
    assert len(support) >= 1
    for row, neighbours in support.items():
        assert torch.equal(neighbours, exact.nearest(exact.bank[row][None], k=5)[1][0])
    with exact_search():  # what an exported graph computes: the exact search whatever the config
        assert not rough.approximate
        assert torch.allclose(patch_scores(features, rough)[0], ref_d, atol=1e-5)
    assert rough.approximate


def test_a_batch_is_refined_in_shared_passes_with_each_images_own_result(monkeypatch):
    """Scoring images together reads the bank once per round for all of them, and gives each image
    what scoring it alone gives (same distances, indices and Eq. 7 neighbours)."""
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    import defectscope.models.patchcore.memory_bank as memory_bank

    g = torch.Generator().manual_seed(10)
    rough = MemoryBank(16, ratio=1.0, search=HnswSearch(links=2, candidates=1, build_candidates=2))
    rough.bank = clustered(2000, 16, g)
    features = clustered(6 * 64, 16, g).view(6, 8, 8, 16).permute(0, 3, 1, 2)
    features[:3, :, 2, 5] += 4.0
    passes = []
    real = memory_bank._distance_blocks
    monkeypatch.setattr(memory_bank, "_distance_blocks", lambda *a: passes.append(len(a[0])) or real(*a))
    together = patch_scores(features, rough, neighbours=5)
    rounds = len(passes)
    alone = [patch_scores(features[i : i + 1], rough, neighbours=5) for i in range(6)]
    assert rounds < len(passes) - rounds  # fewer passes together than one image at a time
    assert passes[0] > 8  # the first pass holds several images' blocks
    for i, one in enumerate(alone):
        assert torch.equal(together.distances[i], one.distances[0])
        assert torch.equal(together.indices[i], one.indices[0])
        for row, neighbours in one.support.items():
            assert torch.equal(together.support[row], neighbours)


def test_a_part_unlike_every_good_one_is_refined_in_few_passes(monkeypatch):
    """Every patch far from the bank and the same (a blank frame, the wrong part): the graph is a
    little off on each, so nearly all must be searched exactly; the blocks double, so that costs
    a handful of passes over the bank, not one per block of eight, and the result stays exact."""
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    import defectscope.models.patchcore.memory_bank as memory_bank

    g = torch.Generator().manual_seed(12)
    exact = MemoryBank(16, ratio=1.0)
    rough = MemoryBank(16, ratio=1.0, search=HnswSearch(links=2, candidates=1, build_candidates=2))
    exact.bank = rough.bank = clustered(2000, 16, g)
    features = (6.0 + 0.01 * torch.randn(1, 16, 16, 16, generator=g))  # 256 patches, all alike and far
    passes = []
    real = memory_bank._distance_blocks
    monkeypatch.setattr(memory_bank, "_distance_blocks", lambda *a: passes.append(len(a[0])) or real(*a))
    got = patch_scores(features, rough)
    searched = sum(passes)
    assert searched > 128  # most patches needed the exact search ...
    assert len(passes) <= 7  # ... in 8, 8, 16, 32, 64, 128 (+ the rest) patches per pass, not 32 passes of 8
    assert searched <= 256  # and never a patch twice
    ref = patch_scores(features, exact)
    assert torch.allclose(got.distances.amax(), ref.distances.amax(), atol=1e-5)


def test_the_exact_pass_reduces_each_block_and_matches_brute_force():
    """Whatever the budget (down to one query per block, which keeps memory at one row of the
    bank), the nearest rows and the k nearest of the rest are the brute-force ones."""
    from defectscope.models.patchcore.memory_bank import _distance_blocks

    g = torch.Generator().manual_seed(13)
    bank, queries = torch.randn(300, 8, generator=g), torch.randn(23, 8, generator=g)
    norms = bank.square().sum(dim=1)
    brute = torch.cdist(queries, bank)
    for budget in (1, 300 * 5, 1 << 24):
        d2, near, kin = _distance_blocks(queries, bank, norms, budget, 17, 4)
        assert torch.equal(near, brute[:17].argmin(dim=1))
        assert torch.allclose((d2 + queries[:17].square().sum(dim=1)).sqrt(), brute[:17].min(dim=1).values, atol=1e-5)
        assert torch.equal(kin, brute[17:].topk(4, dim=1, largest=False).indices)


def test_the_graph_is_built_when_a_scorer_prepares_the_model_and_follows_the_bank():
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    g = torch.Generator().manual_seed(8)
    source = MemoryBank(16, ratio=1.0)
    source.bank = clustered(500, 16, g)
    loaded = MemoryBank(16, ratio=1.0, search=HnswSearch())
    loaded.load_state_dict(source.state_dict())
    assert loaded._faiss_index is None  # loading alone builds nothing (export, a GPU need none)
    loaded.prepare_index()
    index = loaded._faiss_index[1]
    assert index.ntotal == 500
    extra = clustered(20, 16, g)
    loaded.append(extra)  # an accepted part: its rows join the same graph, no rebuild
    assert loaded._faiss_index[1] is index and index.ntotal == 520
    assert torch.equal(torch.from_numpy(index.reconstruct_n(500, 20)), extra)  # in the graph, as the bank's rows
    loaded.search = FaissSearch()  # another search over the same bank: another index, exact
    assert torch.equal(loaded.nearest_patches(extra)[1], torch.arange(500, 520))
    queries = clustered(50, 16, g)
    assert torch.equal(loaded.nearest(queries)[1][:, 0], torch.cdist(queries, loaded.bank).argmin(dim=1))
    with torch.no_grad():
        loaded.bank.mul_(2)  # changed in place: the index and the norms follow
    assert torch.equal(loaded.nearest(queries)[1][:, 0], torch.cdist(queries, loaded.bank).argmin(dim=1))
    assert torch.allclose(loaded.bank_norms(), loaded.bank.square().sum(dim=1))


def test_hnsw_scores_as_the_exact_search_when_rounding_differs():
    """Large feature norms: torch's ‖q‖² − 2q·m + ‖m‖² and faiss round a distance differently, by more
    than the spread of the farthest patches; the exact pass must not stop early on that."""
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    g = torch.Generator().manual_seed(9)
    rows = clustered(3000, 16, g) + 30.0
    exact, fast = MemoryBank(16, ratio=1.0), MemoryBank(16, ratio=1.0, search=HnswSearch(links=4, candidates=2))
    exact.bank = fast.bank = rows
    near = rows[torch.randint(3000, (40 * 64,), generator=g)]
    direction = torch.randn(near.shape, generator=g)
    patches = near + 0.5 * direction / direction.norm(dim=1, keepdim=True)  # every patch about 0.5 away
    features = patches.view(40, 8, 8, 16).permute(0, 3, 1, 2)
    ref, got = patch_scores(features, exact, neighbours=9), patch_scores(features, fast, neighbours=9)
    flat_ref, flat_got = ref.distances.view(40, -1), got.distances.view(40, -1)
    assert torch.equal(flat_got.argmax(1), flat_ref.argmax(1))
    assert torch.equal(flat_got.amax(1), flat_ref.amax(1))
    scores = [reweighted_image_score(m.distances, m.indices, m.features, bank, 9, m.support)
              for m, bank in ((ref, exact), (got, fast))]
    assert torch.allclose(scores[0], scores[1], rtol=0, atol=1e-6)


def test_hnsw_builds_the_same_graph_every_time():
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    g = torch.Generator().manual_seed(7)
    rows, queries = clustered(3000, 16, g), clustered(500, 16, g)
    found = []
    for _ in range(2):
        bank = MemoryBank(16, ratio=1.0, search=HnswSearch(links=4, candidates=2))
        bank.bank = rows.clone()
        found.append(bank.nearest_patches(queries))
    assert torch.equal(found[0][1], found[1][1]) and torch.equal(found[0][0], found[1][0])


def test_an_approximate_search_without_faiss_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "faiss", None)
    with pytest.raises(SearchUnavailable, match=r"search 'hnsw' needs the faiss-cpu package.*defectscope\[faiss\]"):
        check_search(HnswSearch())  # what a run asks before any work
    bank = MemoryBank(4, ratio=1.0, search=HnswSearch())  # a checkpoint still loads (export, a GPU need no faiss)
    bank.bank = torch.randn(10, 4)
    with pytest.raises(SearchUnavailable, match=r"search 'hnsw'"):
        bank.nearest_patches(torch.randn(3, 4))
    check_search(TorchSearch())  # the torch search needs nothing more
    assert not faiss_installed()


def test_the_bank_norms_follow_the_bank():
    bank = MemoryBank(3, ratio=1.0)
    bank.bank = torch.ones(4, 3)
    assert torch.equal(bank.bank_norms(), torch.full((4,), 3.0))
    bank.bank = torch.cat([bank.bank, 2 * torch.ones(1, 3)])  # absorb: a new, longer bank
    assert torch.equal(bank.bank_norms(), torch.tensor([3.0, 3, 3, 3, 12]))


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


def test_hnsw_patchcore_scores_images_as_the_exact_search_does():
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    torch.manual_seed(0)
    exact, fast = tiny(coreset_ratio=0.5), tiny(coreset_ratio=0.5, search=HnswSearch(links=2, candidates=1))
    train = textured(8, 2)
    fit(exact, train)
    fast.load_state_dict(exact.state_dict())
    test = textured(4, 3)
    test[:2, :, 10:30, 30:50] = 0.9
    ref, got = exact.predict(test), fast.predict(test)
    assert torch.allclose(got.image_score, ref.image_score, atol=1e-5)
    assert (got.anomaly_map >= ref.anomaly_map - 1e-4).all()  # a missed neighbour only reads farther


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


@pytest.mark.parametrize(("given", "expected"), [
    ("torch", TorchSearch()), ("faiss", FaissSearch()),  # the strings older configs and checkpoints hold
    ("hnsw", HnswSearch(links=16, candidates=16, build_candidates=40)),
    ({"kind": "hnsw", "candidates": 32}, HnswSearch(links=16, candidates=32, build_candidates=40)),
])
def test_the_search_is_one_choice_in_a_config(given, expected):
    cfg = build_config({"model": {"name": "patchcore", "search": given}}, "run.yaml")
    assert cfg.model.search == expected
    again = config_from_yaml(config_to_yaml(cfg), "again.yaml")  # the checkpoint's copy reads back the same
    assert again.model.search == cfg.model.search


def test_a_search_key_of_another_kind_is_named():
    with pytest.raises(ConfigError, match=r"model.search.links' does not apply with 'model.search.kind: faiss'"):
        build_config({"model": {"name": "patchcore", "search": {"kind": "faiss", "links": 8}}}, "run.yaml")
    with pytest.raises(ConfigError, match=r"model.search.candidates"):
        build_config({"model": {"name": "patchcore", "search": {"kind": "hnsw", "candidates": 0}}}, "run.yaml")
