"""Finding the images to score: order, ground-truth rules, duplicates, the output folder, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectscope.data.discovery import collect_inputs, is_ground_truth
from defectscope.data.errors import DataError
from defectscope.data.limits import IMAGE_SUFFIXES


def touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch()
    return path


@pytest.mark.parametrize(("name", "mask"), [("a.png", False), ("a_mask.png", True), ("ground_truth/x/a.png", True),
                                             ("b.jpg", False)])
def test_ground_truth_rules(tmp_path, name, mask):
    path = touch(tmp_path / name)
    assert is_ground_truth(path) is mask
    (tmp_path / "a.jpg").touch()  # now a.png is MTSD's mask of a.jpg
    assert is_ground_truth(path) is (mask or name == "a.png")


def test_inputs_come_in_the_order_given_each_folder_sorted_and_masks_counted(tmp_path):
    root = tmp_path / "in"
    for name in ("b/2.png", "b/1.jpg", "b/1.png", "a/x.bmp", "a/ground_truth/x.png", "a/y_mask.tif", ".hidden/z.png",
                 "a/.dot.png", "a/notes.txt", "a/UPPER.JPG"):
        touch(root / name)
    loose = touch(tmp_path / "loose.tiff")
    found, skipped = collect_inputs([str(loose), str(root)])
    assert [(i.path, i.relative) for i in found] == [
        (loose, Path("loose.tiff")),
        (root / "a/UPPER.JPG", Path("a/UPPER.JPG")), (root / "a/x.bmp", Path("a/x.bmp")),
        (root / "b/1.jpg", Path("b/1.jpg")), (root / "b/2.png", Path("b/2.png")),
    ]
    assert skipped == 3  # ground_truth/x.png, y_mask.tif and b/1.png (MTSD's mask beside b/1.jpg)


def test_a_file_reached_twice_is_listed_once_and_the_output_folder_is_left_out(tmp_path):
    root = tmp_path / "in"
    image = touch(root / "x.png")
    touch(root / "out" / "maps" / "x.png.png")  # an earlier run's picture inside the input folder
    found, _ = collect_inputs([str(root), str(image)], exclude=root / "out")
    assert [i.path for i in found] == [image]


def test_missing_paths_and_empty_folders_are_errors_that_name_them(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'}: no such file or folder"):
        collect_inputs([str(tmp_path / "nope")])
    touch(tmp_path / "empty" / "a_mask.png")
    with pytest.raises(DataError, match=r"no images found in .*empty \(1 ground-truth masks skipped\)") as err:
        collect_inputs([str(tmp_path / "empty")])
    assert all(suffix in str(err.value) for suffix in IMAGE_SUFFIXES)
