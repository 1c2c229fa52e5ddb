"""Layout readers: pairing, splits, tolerated variations and errors naming the path."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from defectscope.data import (
    DataError,
    SourceConfig,
    SplitConfig,
    btad_records,
    folder_records,
    mtsd_records,
    mvtec_records,
    records_for,
    split_normals,
)
from defectscope.data.layouts import count_by_type
from helpers.synthetic import (
    BTAD_N_DEFECT,
    BTAD_N_TEST_GOOD,
    BTAD_N_TRAIN,
    BTAD_PRODUCTS,
    BTAD_VARIANTS,
    FOLDER_N_DEFECT,
    FOLDER_N_GOOD,
    MTSD_DEFECT_COUNTS,
    MTSD_N_FREE,
    MVTEC_CATEGORIES,
    MVTEC_DEFECT_TYPES,
    MVTEC_N_DEFECT,
    MVTEC_N_TEST_GOOD,
    MVTEC_N_TRAIN,
    make_mtsd_tree,
    make_mvtec_tree,
)

SHARED_DATA = Path(__file__).parents[2].parent / "shared" / "data"


def image_names(records) -> set[str]:
    return {r.image_path.name for r in records}


def check_common(train, test) -> None:
    assert train, "training set is empty"
    assert all(r.label == 0 and r.mask_path is None and r.defect_type == "good" for r in train)
    assert not {r.image_path for r in train} & {r.image_path for r in test}
    for r in test:
        if r.label == 1:
            assert r.mask_path is not None and r.mask_path.is_file()
            assert r.defect_type != "good"
        else:
            assert r.mask_path is None and r.defect_type == "good"


# --------------------------------------------------------------------------- MVTec


@pytest.mark.parametrize("category", MVTEC_CATEGORIES)
def test_mvtec_records(mvtec_root: Path, category: str) -> None:
    train, test = mvtec_records(mvtec_root, category)
    check_common(train, test)
    assert len(train) == MVTEC_N_TRAIN
    assert count_by_type(test) == {
        "good": MVTEC_N_TEST_GOOD,
        **{t: MVTEC_N_DEFECT for t in MVTEC_DEFECT_TYPES},
    }
    assert {r.category for r in train + test} == {category}
    assert [r.image_path.name for r in train] == sorted(r.image_path.name for r in train)
    for r in test:
        if r.label == 1:
            assert r.mask_path == (
                mvtec_root / category / "ground_truth" / r.defect_type / f"{r.image_path.stem}_mask.png"
            )
            assert r.image_path.parent.name == r.defect_type


def test_mvtec_category_empty_means_root_is_the_category(mvtec_root: Path) -> None:
    train, test = mvtec_records(mvtec_root / "widget", "")
    assert len(train) == MVTEC_N_TRAIN and {r.category for r in train} == {"widget"}
    assert (train, test) == mvtec_records(mvtec_root, "widget")


@pytest.mark.parametrize("product", BTAD_PRODUCTS)
def test_btad_records(btad_root: Path, product: str) -> None:
    train, test = btad_records(btad_root, product)
    check_common(train, test)
    variant = BTAD_VARIANTS[product]
    assert len(train) == BTAD_N_TRAIN
    assert count_by_type(test) == {"good": BTAD_N_TEST_GOOD, "ko": BTAD_N_DEFECT}
    for r in train + test:
        assert r.image_path.suffix == variant.image_ext
    for r in test:
        if r.label == 1:
            assert r.mask_path.name == f"{r.image_path.stem}{variant.mask_suffix}{variant.mask_ext}"
    # the mvtec reader and the dispatcher read the same tree the same way
    assert mvtec_records(btad_root, product) == (train, test)
    assert records_for(SourceConfig("btad", str(btad_root), product)) == (train, test)


def test_mvtec_mask_lookup_tolerates_plain_names(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",), mask_suffix="", mask_ext=".bmp", image_ext=".jpg")
    train, test = mvtec_records(root, "c")
    defects = [r for r in test if r.label == 1]
    assert defects and all(r.mask_path.name == r.image_path.stem + ".bmp" for r in defects)


def test_ambiguous_masks_are_an_error(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    gt = root / "c" / "ground_truth" / "scratch"
    shutil.copy(gt / "000_mask.png", gt / "000.png")
    with pytest.raises(DataError, match="several masks") as info:
        mvtec_records(root, "c")
    assert str(root / "c" / "test" / "scratch" / "000.png") in str(info.value)


def test_hidden_and_non_image_files_are_skipped(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    good = root / "c" / "train" / "good"
    (good / ".DS_Store").write_bytes(b"junk")
    (good / "._000.png").write_bytes(b"appledouble")
    (good / "notes.txt").write_text("hello")
    (root / "c" / "test" / ".hidden_type").mkdir()
    (root / "c" / "test" / ".hidden_type" / "x.png").write_bytes(b"junk")
    (root / "c" / "ground_truth" / "scratch" / ".thumb.png").write_bytes(b"junk")
    shutil.copy(good / "000.png", good / "UPPER.PNG")
    shutil.copy(good / "000.png", good / "lower.Jpeg")
    train, test = mvtec_records(root, "c")
    assert len(train) == MVTEC_N_TRAIN + 2
    assert {"UPPER.PNG", "lower.Jpeg"} <= image_names(train)
    assert not any(name.startswith(".") for name in image_names(train + test))


def test_missing_root_and_category(tmp_path: Path, mvtec_root: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        mvtec_records(tmp_path / "absent", "c")
    assert str(tmp_path / "absent") in str(info.value)
    with pytest.raises(DataError, match="not found") as info:
        mvtec_records(mvtec_root, "no_such_category")
    assert str(mvtec_root / "no_such_category") in str(info.value)


def test_empty_category(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",), n_train=0)
    with pytest.raises(DataError, match="no training images") as info:
        mvtec_records(root, "c")
    assert str(root / "c" / "train" / "good") in str(info.value)


def test_missing_train_or_test_folder(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c", "d"))
    shutil.rmtree(root / "c" / "train")
    with pytest.raises(DataError, match="training folder not found") as info:
        mvtec_records(root, "c")
    assert str(root / "c" / "train") in str(info.value)
    shutil.rmtree(root / "d" / "test")
    with pytest.raises(DataError, match="test folder not found"):
        mvtec_records(root, "d")


def test_defective_image_without_mask(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    (root / "c" / "ground_truth" / "spot" / "001_mask.png").unlink()
    with pytest.raises(DataError, match="without a mask") as info:
        mvtec_records(root, "c")
    assert str(root / "c" / "test" / "spot" / "001.png") in str(info.value)


def test_orphan_mask(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    (root / "c" / "test" / "spot" / "001.png").unlink()
    with pytest.raises(DataError, match="orphan") as info:
        mvtec_records(root, "c")
    assert str(root / "c" / "ground_truth" / "spot" / "001_mask.png") in str(info.value)


def test_orphan_mask_folder_without_test_folder(tmp_path: Path) -> None:
    root = make_mvtec_tree(tmp_path, categories=("c",))
    shutil.rmtree(root / "c" / "test" / "spot")
    with pytest.raises(DataError, match="orphan") as info:
        mvtec_records(root, "c")
    assert str(root / "c" / "ground_truth" / "spot") in str(info.value)


# --------------------------------------------------------------------------- MTSD


def test_mtsd_records(mtsd_root: Path) -> None:
    split = SplitConfig(test_fraction=0.2, seed=0)
    train, test = mtsd_records(mtsd_root, split)
    check_common(train, test)
    n_test_good = round(0.2 * MTSD_N_FREE)
    assert len(train) == MTSD_N_FREE - n_test_good
    assert count_by_type(test) == {
        "good": n_test_good,
        **{name.lower(): n for name, n in MTSD_DEFECT_COUNTS.items()},
    }
    assert {r.category for r in train + test} == {"mtsd"}
    assert all(r.image_path.suffix == ".jpg" for r in train + test)
    for r in test:
        if r.label == 1:
            assert r.mask_path == r.image_path.with_suffix(".png")
    # every normal image is in exactly one of train / test
    free = {p.name for p in (mtsd_root / "MT_Free" / "Imgs").glob("*.jpg")}
    good = [r for r in test if r.label == 0]
    assert image_names(train) | image_names(good) == free
    assert not image_names(train) & image_names(good)


def test_mtsd_split_is_deterministic_and_seeded(mtsd_root: Path) -> None:
    def split(seed: int) -> tuple[set, set]:
        train, test = mtsd_records(mtsd_root, SplitConfig(test_fraction=0.3, seed=seed))
        return image_names(train), image_names([r for r in test if r.label == 0])

    assert split(0) == split(0)
    assert split(0) != split(1) or split(0) != split(2)
    all_defects = {p.name for d in mtsd_root.glob("MT_*") if d.name != "MT_Free" for p in (d / "Imgs").glob("*.jpg")}
    for seed in range(3):
        train, test = mtsd_records(mtsd_root, SplitConfig(test_fraction=0.3, seed=seed))
        assert image_names(r for r in test if r.label == 1) == all_defects
        assert not image_names(train) & image_names(test)


def test_split_normals_documented_rule() -> None:
    import random

    paths = [Path(f"/x/{name}.jpg") for name in ("d", "b", "a", "e", "c", "f", "g")]
    train, test = split_normals(paths, 0.3, seed=5)
    expected = sorted(paths, key=lambda p: p.name)
    random.Random(5).shuffle(expected)
    assert test == sorted(expected[: round(0.3 * 7)], key=lambda p: p.name)
    assert train == sorted(expected[round(0.3 * 7) :], key=lambda p: p.name)
    # independent of input order
    assert split_normals(list(reversed(paths)), 0.3, seed=5) == (train, test)
    assert split_normals(paths, 0.0, seed=5) == (sorted(paths, key=lambda p: p.name), [])
    with pytest.raises(DataError, match="test_fraction"):
        split_normals(paths, 1.0, seed=0)


def test_mtsd_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found") as info:
        mtsd_records(tmp_path / "absent")
    assert str(tmp_path / "absent") in str(info.value)

    root = make_mtsd_tree(tmp_path / "no_mask")
    victim = sorted((root / "MT_Crack" / "Imgs").glob("*.png"))[0]
    victim.unlink()
    with pytest.raises(DataError, match="without a mask") as info:
        mtsd_records(root)
    assert str(victim.with_suffix(".jpg")) in str(info.value)

    root = make_mtsd_tree(tmp_path / "orphan")
    orphan = sorted((root / "MT_Blowhole" / "Imgs").glob("*.png"))[0]
    orphan.with_suffix(".jpg").unlink()
    with pytest.raises(DataError, match="orphan") as info:
        mtsd_records(root)
    assert str(orphan) in str(info.value)

    root = make_mtsd_tree(tmp_path / "empty", n_free=0)
    with pytest.raises(DataError, match="no normal images") as info:
        mtsd_records(root)
    assert str(root / "MT_Free" / "Imgs") in str(info.value)


# --------------------------------------------------------------------------- folder


def test_folder_records(folder_root: Path) -> None:
    cfg = SourceConfig("folder", str(folder_root), "parts", defect_dir="defect", mask_dir="mask")
    train, test = folder_records(folder_root, cfg, SplitConfig(test_fraction=0.25, seed=3))
    check_common(train, test)
    n_test_good = round(0.25 * FOLDER_N_GOOD)
    assert len(train) == FOLDER_N_GOOD - n_test_good
    assert count_by_type(test) == {"good": n_test_good, "defect": FOLDER_N_DEFECT}
    assert {r.category for r in train + test} == {"parts"}
    assert records_for(cfg, SplitConfig(test_fraction=0.25, seed=3)) == (train, test)


def test_folder_with_test_good_dir_and_default_category(tmp_path: Path, folder_root: Path) -> None:
    cfg = SourceConfig("folder", str(folder_root), good_dir="good", test_good_dir="defect")
    train, test = folder_records(folder_root, cfg)
    assert len(train) == FOLDER_N_GOOD and len(test) == FOLDER_N_DEFECT
    assert {r.category for r in train} == {folder_root.name}


def test_folder_errors(tmp_path: Path, folder_root: Path) -> None:
    cfg = SourceConfig("folder", str(folder_root), "p", good_dir="absent")
    with pytest.raises(DataError, match="not found") as info:
        records_for(cfg)
    assert str(folder_root / "absent") in str(info.value)
    cfg = SourceConfig("folder", str(folder_root), "p", defect_dir="defect")
    with pytest.raises(DataError, match="mask_dir"):
        records_for(cfg)

    root = tmp_path / "f"
    shutil.copytree(folder_root, root)
    (root / "mask" / "d99_mask.png").write_bytes((root / "mask" / "d00_mask.png").read_bytes())
    cfg = SourceConfig("folder", str(root), "p", defect_dir="defect", mask_dir="mask")
    with pytest.raises(DataError, match="orphan") as info:
        records_for(cfg)
    assert str(root / "mask" / "d99_mask.png") in str(info.value)


def test_unknown_layout() -> None:
    with pytest.raises(DataError, match="unknown layout"):
        records_for(SourceConfig("nope", "/tmp"))  # type: ignore[arg-type]


# --------------------------------------------------------------------------- demo and real data


def test_demo_mtsd_mini(demo_mtsd_root: Path) -> None:
    train, test = mtsd_records(demo_mtsd_root, SplitConfig(test_fraction=0.2, seed=0))
    check_common(train, test)
    assert len(train) + count_by_type(test)["good"] == 40
    counts = count_by_type(test)
    assert {k: v for k, v in counts.items() if k != "good"} == {
        "blowhole": 3,
        "break": 3,
        "crack": 3,
        "fray": 3,
        "uneven": 3,
    }


@pytest.mark.shared_data
def test_real_data_counts() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA} (../shared/data next to the repo)")
    train, test = mtsd_records(SHARED_DATA / "mtsd", SplitConfig(test_fraction=0.2, seed=0))
    counts = count_by_type(test)
    assert len(train) + counts.pop("good") == 952
    assert counts == {"blowhole": 115, "break": 85, "crack": 57, "fray": 32, "uneven": 103}
    assert len(train) == 952 - round(0.2 * 952)

    train, test = mvtec_records(SHARED_DATA / "mvtec_ad", "bottle")
    counts = count_by_type(test)
    assert len(train) == 209
    assert counts.pop("good") == 20
    assert sum(counts.values()) == 63
    assert set(counts) == {"broken_large", "broken_small", "contamination"}
