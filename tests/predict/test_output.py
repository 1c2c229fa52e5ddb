"""predict's output folder without a model: map names, merging the ranks' rows in input order, scores.json."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from defectscope.data.discovery import InputImage
from defectscope.data.errors import DataError
from defectscope.predict.output import (
    COLUMNS,
    PARTS_DIR,
    SCORES_CSV,
    check_map_names,
    merge_parts,
    part_path,
    prepare_output,
    write_json,
)
from defectscope.predict.shard import Shard


def write_parts(out: Path, rows: list[list[str]], world_size: int) -> None:
    """Row i (index, *COLUMNS) goes to rank i % world_size, as Shard.owns deals them."""
    for rank in range(world_size):
        with part_path(out, rank).open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(("index", *COLUMNS))
            writer.writerows(row for i, row in enumerate(rows) if Shard(rank, world_size).owns(i))


def row(i: int, error: str = "") -> list[str]:
    """index, then COLUMNS: path, map, class_name, score, normalized_score, verdict, threshold,
    false_alarm_bound, defect_area, error."""
    if error:
        return [str(i), f"in/{i}.png", *[""] * (len(COLUMNS) - 2), error]
    verdict = "DEFECT" if i % 2 else "OK"
    return [str(i), f"in/{i}.png", f"{i}.png", "widget", f"{i}.5", "0.25", verdict, "1.0", "0.02", "0.01", ""]


def images(tmp_path: Path, *relatives: str) -> list[InputImage]:
    return [InputImage(tmp_path / r, Path(r)) for r in relatives]


def test_maps_are_named_by_stem_and_keep_the_suffix_only_where_a_stem_is_shared(tmp_path):
    found = images(tmp_path, "line1/0001.jpg", "a.jpg", "a.PNG", "b.tif", "line1/a.png", "c.JPG", "C.bmp")
    assert [n.as_posix() for n in check_map_names(found)] == [
        "line1/0001.png", "a_jpg.png", "a_PNG.png", "b.png", "line1/a.png", "c_JPG.png", "C_bmp.png"]
    special = InputImage(tmp_path / "fifo.png", Path("fifo.png"), error="a named pipe (FIFO)")
    assert check_map_names([special, *images(tmp_path, "fifo.jpg")]) == [None, Path("fifo.png")]


def test_a_shared_map_is_refused_naming_both(tmp_path):
    first, second = InputImage(tmp_path / "x/1.png", Path("1.png")), InputImage(tmp_path / "y/1.jpg", Path("1.jpg"))
    for pair in ([first, first], images(tmp_path, "a.jpg", "a.png", "a_jpg.png")):
        with pytest.raises(DataError, match="would both be written as maps/"):
            check_map_names(pair)
    check_map_names([first, second])  # one folder's stems: 1_png.png, 1_jpg.png
    clash = [InputImage(tmp_path / "x/1.png", Path("1.png")), InputImage(tmp_path / "y/1.png", Path("1.png"))]
    with pytest.raises(DataError, match="would both be written as maps/1.png") as err:
        check_map_names(clash)
    assert str(clash[0].path) in str(err.value) and str(clash[1].path) in str(err.value)


def test_a_map_where_another_needs_a_folder_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"maps/x.png would stand where .*maps/x.png/a.png needs a folder"):
        check_map_names(images(tmp_path, "x.jpg", "x.png/a.png"))


def test_skipped_masks_are_listed_up_to_a_cap_and_counted_beyond(tmp_path, monkeypatch):
    import defectscope.predict.output as output

    monkeypatch.setattr(output, "SKIPPED_LISTED", 3)
    few = output.skipped_fields([Path("gt/1.png")])
    assert few == {"ground_truth_skipped": 1, "ground_truth_skipped_files": ["gt/1.png"],
                   "ground_truth_skipped_files_left_out": 0}
    many = output.skipped_fields([Path(f"gt/{i}.png") for i in range(5)])
    assert many["ground_truth_skipped"] == 5 and len(many["ground_truth_skipped_files"]) == 3
    assert many["ground_truth_skipped_files_left_out"] == 2


def no_repeated_keys(pairs: list[tuple[str, object]]) -> dict[str, object]:
    keys = [k for k, _ in pairs]
    assert len(keys) == len(set(keys)), f"a key twice in one object: {keys}"
    return dict(pairs)


def test_three_ranks_merge_into_input_order_with_counts_and_a_typed_json(tmp_path):
    prepare_output(tmp_path)
    rows = [row(i, error="truncated" if i == 4 else "") for i in range(7)]
    write_parts(tmp_path, rows, 3)
    counts = merge_parts(tmp_path, len(rows), 3)
    assert counts == {"inputs": 7, "scored": 6, "failed": 1, "defective": 3}
    with (tmp_path / SCORES_CSV).open(newline="") as f:
        merged = list(csv.DictReader(f))
    assert [r["path"] for r in merged] == [f"in/{i}.png" for i in range(7)] and list(merged[0]) == list(COLUMNS)
    assert not (tmp_path / PARTS_DIR).exists()
    write_json(tmp_path, {"world_size": 3, **counts})
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["world_size"] == 3 and data["failed"] == 1 and data["inputs"] == 7
    assert json.loads((tmp_path / "scores.json").read_text(), object_pairs_hook=no_repeated_keys)
    assert data["images"][1] == {"path": "in/1.png", "map": "1.png", "class_name": "widget", "score": 1.5,
                                 "normalized_score": 0.25, "verdict": "DEFECT", "defective": True,
                                 "defect_area": 0.01, "error": None}
    assert data["images"][4]["score"] is None and data["images"][4]["error"] == "truncated"


def test_rows_out_of_order_are_an_error_and_leave_no_table(tmp_path):
    prepare_output(tmp_path)
    rows = [row(i) for i in range(4)]
    rows[0], rows[2] = rows[2], rows[0]  # rank 0 wrote input 2 before input 0
    write_parts(tmp_path, rows, 2)
    with pytest.raises(RuntimeError, match="rank 0's rows are out of order at input 0"):
        merge_parts(tmp_path, 4, 2)
    assert not (tmp_path / SCORES_CSV).exists()
