"""AnomalyDataset and build_datasets: items, caching, bad files, multi-class, validation."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from defectscope.data import (
    AnomalyDataset,
    AugmentConfig,
    DataConfig,
    DataError,
    Record,
    Sample,
    SkippedFilesWarning,
    SourceConfig,
    SplitConfig,
    build_datasets,
    build_records,
    hold_out,
    load_mask,
    mtsd_records,
    mvtec_records,
    resize_mask,
)
from helpers.synthetic import (
    BTAD_N_TRAIN,
    MTSD_N_FREE,
    MVTEC_CATEGORIES,
    MVTEC_N_TRAIN,
    make_mvtec_tree,
    mvtec_config,
)

SIZE = 24


def mvtec_test_records(root: Path, category: str = "widget") -> list[Record]:
    return mvtec_records(root, category)[1]


# --------------------------------------------------------------------------- items


@pytest.mark.parametrize("cache", [False, True])
def test_items_have_the_right_shapes_and_values(mvtec_root: Path, cache: bool) -> None:
    records = mvtec_test_records(mvtec_root)
    ds = AnomalyDataset(records, {"widget": 0}, SIZE, cache=cache)
    assert len(ds) == len(records)
    for i, record in enumerate(records):
        sample = ds[i]
        assert isinstance(sample, Sample)
        assert sample.image.shape == (3, SIZE, SIZE) and sample.image.dtype == torch.float32
        assert sample.mask.shape == (1, SIZE, SIZE) and sample.mask.dtype == torch.float32
        assert 0.0 <= float(sample.image.min()) and float(sample.image.max()) <= 1.0
        assert set(sample.mask.unique().tolist()) <= {0.0, 1.0}
        assert sample.label == record.label and sample.class_id == 0
        assert sample.path == str(record.image_path)
        if record.label == 0:
            assert float(sample.mask.sum()) == 0.0
        else:
            expected = resize_mask(load_mask(record.mask_path), SIZE)
            torch.testing.assert_close(sample.mask, expected)
            assert float(sample.mask.sum()) > 0


def test_cache_matches_uncached_within_quantisation(mvtec_root: Path) -> None:
    records = mvtec_test_records(mvtec_root)
    plain = AnomalyDataset(records, {"widget": 0}, SIZE, cache=False)
    cached = AnomalyDataset(records, {"widget": 0}, SIZE, cache=True)
    assert cached._images[0].dtype == torch.uint8 and cached._masks[0].dtype == torch.bool
    for i in range(len(records)):
        torch.testing.assert_close(cached[i].image, plain[i].image, atol=0.5 / 255 + 1e-6, rtol=0)
        assert torch.equal(cached[i].mask, plain[i].mask)


def test_cache_does_not_decode_again(mvtec_root: Path, monkeypatch) -> None:
    import defectscope.data.dataset as dataset_module

    ds = AnomalyDataset(mvtec_test_records(mvtec_root), {"widget": 0}, SIZE, cache=True)

    def fail(*args, **kwargs):
        raise AssertionError("decoded again despite the cache")

    monkeypatch.setattr(dataset_module, "load_image", fail)
    monkeypatch.setattr(dataset_module, "load_mask", fail)
    for i in range(len(ds)):
        ds[i]


def test_grey_non_square_mtsd(mtsd_root: Path) -> None:
    train, test = mtsd_records(mtsd_root)
    ds = AnomalyDataset(test, None, SIZE)
    assert ds.class_ids == {"mtsd": 0}
    for i in range(len(ds)):
        image = ds[i].image
        assert image.shape == (3, SIZE, SIZE)
        assert torch.equal(image[0], image[1]) and torch.equal(image[1], image[2])


def test_dataloader_collates_samples(mvtec_root: Path) -> None:
    ds = AnomalyDataset(mvtec_test_records(mvtec_root), {"widget": 0}, SIZE, cache=True)
    batch = next(iter(DataLoader(ds, batch_size=4)))
    assert isinstance(batch, Sample)
    assert batch.image.shape == (4, 3, SIZE, SIZE) and batch.mask.shape == (4, 1, SIZE, SIZE)
    assert batch.label.dtype == torch.int64 and batch.class_id.tolist() == [0] * 4
    assert len(batch.path) == 4


def test_augmentation_in_dataset_is_seeded(mvtec_root: Path) -> None:
    records = mvtec_test_records(mvtec_root)
    cfg = AugmentConfig(hflip=True, vflip=True, brightness=0.3)
    a = AnomalyDataset(records, {"widget": 0}, SIZE, augment=cfg, cache=True, seed=3)
    b = AnomalyDataset(records, {"widget": 0}, SIZE, augment=cfg, cache=True, seed=3)
    assert all(torch.equal(a[i].image, b[i].image) for i in range(len(a)))
    first = [a[i].image for i in range(len(a))]
    a.set_epoch(1)
    assert any(not torch.equal(first[i], a[i].image) for i in range(len(a)))
    # defective items: the flipped mask still marks the defect blob of the flipped image
    plain = AnomalyDataset(records, {"widget": 0}, SIZE, cache=True)
    for i, record in enumerate(records):
        if record.label == 1:
            flips = [
                (plain[i].mask, plain[i].image),
                (plain[i].mask.flip(-1), plain[i].image.flip(-1)),
                (plain[i].mask.flip(-2), plain[i].image.flip(-2)),
                (plain[i].mask.flip(-1).flip(-2), plain[i].image.flip(-1).flip(-2)),
            ]
            assert any(torch.equal(a[i].mask, m) for m, _ in flips)
    # global-RNG mode is reproducible under torch.manual_seed
    g = AnomalyDataset(records, {"widget": 0}, SIZE, augment=cfg, cache=True)
    torch.manual_seed(11)
    x = [g[i].image for i in range(len(g))]
    torch.manual_seed(11)
    assert all(torch.equal(x[i], g[i].image) for i in range(len(g)))


# --------------------------------------------------------------------------- bad files


def wrong_size_mask(root: Path) -> tuple[Path, Path]:
    image = root / "c" / "test" / "scratch" / "000.png"
    mask = root / "c" / "ground_truth" / "scratch" / "000_mask.png"
    Image.fromarray(np.zeros((10, 12), np.uint8)).save(mask)
    return image, mask


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def test_wrong_size_mask_names_both_files(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    image, mask = wrong_size_mask(root)
    records = mvtec_records(root, "c")[1]
    index = [r.image_path for r in records].index(image)
    lazy = AnomalyDataset(records, {"c": 0}, SIZE)  # lazy: raises when the item is loaded
    with pytest.raises(DataError, match="differs") as info:
        lazy[index]
    assert str(image) in str(info.value) and str(mask) in str(info.value)
    with pytest.raises(DataError, match="differs"):  # eager with the cache
        AnomalyDataset(records, {"c": 0}, SIZE, cache=True)


def test_missing_file_fails_at_construction(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    records = mvtec_records(root, "c")[0]
    records[2].image_path.unlink()
    with pytest.raises(DataError, match="not found") as info:
        AnomalyDataset(records, {"c": 0}, SIZE)
    assert str(records[2].image_path) in str(info.value)


def test_truncated_file_fails_lazily_naming_it(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    records = mvtec_records(root, "c")[0]
    truncate(records[1].image_path)
    ds = AnomalyDataset(records, {"c": 0}, SIZE)
    ds[0]
    with pytest.raises(DataError, match="truncated") as info:
        ds[1]
    assert str(records[1].image_path) in str(info.value)


@pytest.mark.parametrize("cache", [False, True])
def test_skip_bad_warns_once_listing_every_bad_file(tmp_path: Path, cache: bool) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",), n_train=3, n_test_good=3)
    train, test = mvtec_records(root, "c")
    records = train + test
    bad_image, bad_mask = wrong_size_mask(root)
    truncated = truncate(train[0].image_path)
    garbage = test[1].image_path
    assert test[1].label == 0
    garbage.write_bytes(b"not an image")
    missing = train[2].image_path
    missing.unlink()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = AnomalyDataset(records, {"c": 0}, SIZE, cache=cache, skip_bad=True)
    ours = [w for w in caught if issubclass(w.category, SkippedFilesWarning)]
    assert len(ours) == 1 and len(caught) == 1
    message = str(ours[0].message)
    for path in (bad_mask, truncated, garbage, missing):
        assert str(path) in message
    assert "4 of" in message
    assert len(ds) == len(records) - 4 and len(ds.skipped) == 4
    kept = {r.image_path for r in ds.records}
    assert not kept & {bad_image, truncated, garbage, missing}
    for i in range(len(ds)):
        ds[i]  # everything left loads


def test_skip_bad_without_problems_is_silent(mvtec_root: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = AnomalyDataset(mvtec_test_records(mvtec_root), {"widget": 0}, SIZE, skip_bad=True)
    assert ds.skipped == []


def test_record_checks() -> None:
    record = Record(Path("/x/a.png"), None, 1, "c", "scratch")
    with pytest.raises(DataError, match="no mask"):
        AnomalyDataset([record], {"c": 0}, SIZE)
    record = Record(Path("/x/a.png"), None, 0, "other", "good")
    with pytest.raises(DataError, match="no class id"):
        AnomalyDataset([record], {"c": 0}, SIZE)


# --------------------------------------------------------------------------- build_datasets


def test_build_datasets_multi_class_across_layouts(mtsd_root: Path, btad_root: Path, mvtec_root: Path) -> None:
    cfg = DataConfig(
        sources=(
            SourceConfig("mtsd", str(mtsd_root)),
            SourceConfig("btad", str(btad_root), "01"),
            SourceConfig("btad", str(btad_root), "03"),
            SourceConfig("mvtec", str(mvtec_root), "gadget"),
        ),
        image_size=SIZE,
        validation_fraction=0.25,
        split=SplitConfig(test_fraction=0.2, seed=1),
        cache=True,
    )
    bundle = build_datasets(cfg)
    assert bundle.class_names == ["mtsd", "01", "03", "gadget"]
    assert bundle.num_classes == 4 and bundle.class_ids["03"] == 2
    for ds in (bundle.train, bundle.validation, bundle.test):
        for i in range(len(ds)):
            sample = ds[i]
            record = ds.records[i]
            assert sample.class_id == bundle.class_names.index(record.category)
            assert sample.image.shape == (3, SIZE, SIZE)
    assert bundle.train.augment == cfg.augment
    assert bundle.validation.augment is None and bundle.test.augment is None
    train_ids = {bundle.train[i].class_id for i in range(len(bundle.train))}
    val_ids = {bundle.validation[i].class_id for i in range(len(bundle.validation))}
    assert train_ids == val_ids == {0, 1, 2, 3}
    n_free_train = MTSD_N_FREE - round(0.2 * MTSD_N_FREE)
    per_class_train = [n_free_train, BTAD_N_TRAIN, BTAD_N_TRAIN, MVTEC_N_TRAIN]
    expected_val = [max(1, round(0.25 * n)) for n in per_class_train]
    assert len(bundle.validation) == sum(expected_val)
    assert len(bundle.train) == sum(per_class_train) - sum(expected_val)


def test_shared_category_names_are_made_unique(btad_root: Path, tmp_path: Path) -> None:
    other = make_mvtec_tree(tmp_path / "mv", categories=("01",))
    other2 = make_mvtec_tree(tmp_path / "mv2", categories=("01",))
    cfg = DataConfig(
        sources=(
            SourceConfig("btad", str(btad_root), "01"),
            SourceConfig("mvtec", str(other), "01"),
            SourceConfig("mvtec", str(other2), "01"),
            SourceConfig("btad", str(btad_root), "02"),
        ),
        image_size=SIZE,
    )
    split = build_records(cfg)
    assert split.class_names == ["btad/01", "mvtec/01", "mvtec/01#2", "02"]
    assert {r.category for r in split.train} == set(split.class_names)
    roots = {r.category: r.image_path.parents[3] for r in split.train}
    assert roots["mvtec/01#2"] == other2 and roots["btad/01"] == btad_root


def test_repeated_source_and_empty_sources_are_errors(mvtec_root: Path) -> None:
    source = SourceConfig("mvtec", str(mvtec_root), "widget")
    with pytest.raises(DataError, match="repeats"):
        build_records(DataConfig(sources=(source, source)))
    with pytest.raises(DataError, match="empty"):
        build_records(DataConfig(sources=()))


def test_validation_split(mvtec_root: Path) -> None:
    def split(fraction: float, seed: int):
        return build_records(mvtec_config(mvtec_root, validation_fraction=fraction, split=SplitConfig(seed=seed)))

    a, b = split(0.34, 0), split(0.34, 0)
    assert a == b
    assert not {r.image_path for r in a.train} & {r.image_path for r in a.validation}
    assert all(r.label == 0 for r in a.validation)
    per_class = {c: sum(r.category == c for r in a.validation) for c in MVTEC_CATEGORIES}
    assert per_class == {c: round(0.34 * MVTEC_N_TRAIN) for c in MVTEC_CATEGORIES}
    assert len(a.train) + len(a.validation) == 2 * MVTEC_N_TRAIN
    others = [split(0.34, s).validation for s in (1, 2, 3)]
    assert any(o != a.validation for o in others)
    none = split(0.0, 0)
    assert none.validation == [] and len(none.train) == 2 * MVTEC_N_TRAIN
    assert len(build_datasets(mvtec_config(mvtec_root, validation_fraction=0.0)).validation) == 0


def test_hold_out_bounds() -> None:
    records = [Record(Path(f"/x/{i}.png"), None, 0, "c", "good") for i in range(5)]
    kept, held = hold_out(records, 0.01, seed=0)
    assert len(held) == 1 and len(kept) == 4  # at least one when fraction > 0
    kept, held = hold_out(records[:1], 0.5, seed=0)
    assert held == [] and kept == records[:1]  # never all of them
    with pytest.raises(DataError, match="validation_fraction"):
        hold_out(records, 1.0, seed=0)


def test_build_datasets_skip_bad_warns_once(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c", "d"))
    train, test = mvtec_records(root, "c")
    bad = [truncate(train[0].image_path), truncate(train[4].image_path)]
    bad_image, bad_mask = wrong_size_mask(root)
    cfg = mvtec_config(root, ("c", "d"), skip_bad=True, validation_fraction=0.5)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = build_datasets(cfg)
    assert len(caught) == 1 and issubclass(caught[0].category, SkippedFilesWarning)
    for path in [*bad, bad_mask]:
        assert str(path) in str(caught[0].message)
    total = len(bundle.train) + len(bundle.validation) + len(bundle.test)
    assert total == 2 * (MVTEC_N_TRAIN + len(test)) - 3


def test_build_datasets_without_usable_training_images(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",), n_train=2)
    for record in mvtec_records(root, "c")[0]:
        truncate(record.image_path)
    cfg = mvtec_config(root, ("c",), skip_bad=True, validation_fraction=0.0)
    with pytest.warns(SkippedFilesWarning), pytest.raises(DataError, match="no usable training"):
        build_datasets(cfg)
