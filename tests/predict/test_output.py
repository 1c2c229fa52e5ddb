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
    map_path,
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
    if error:
        return [str(i), f"in/{i}.png", "", "", "", "", "", "", error]
    verdict = "DEFECT" if i % 2 else "OK"
    return [str(i), f"in/{i}.png", f"{i}.png.png", "widget", f"{i}.5", "0.25", verdict, "0.01", ""]


def test_maps_keep_the_inputs_own_name_and_a_shared_map_is_refused_naming_both(tmp_path):
    assert map_path(Path("line1/0001.jpg")) == Path("line1/0001.jpg.png")
    check_map_names([InputImage(tmp_path / "a.jpg", Path("a.jpg")), InputImage(tmp_path / "a.png", Path("a.png"))])
    first, second = InputImage(tmp_path / "x/1.png", Path("1.png")), InputImage(tmp_path / "y/1.png", Path("1.png"))
    with pytest.raises(DataError, match="would both be written as maps/1.png.png") as err:
        check_map_names([first, second])
    assert str(first.path) in str(err.value) and str(second.path) in str(err.value)


def test_three_ranks_merge_into_input_order_with_counts_and_a_typed_json(tmp_path):
    prepare_output(tmp_path)
    rows = [row(i, error="truncated" if i == 4 else "") for i in range(7)]
    write_parts(tmp_path, rows, 3)
    counts = merge_parts(tmp_path, len(rows), 3)
    assert counts == {"images": 7, "scored": 6, "failed": 1, "defective": 3}
    with (tmp_path / SCORES_CSV).open(newline="") as f:
        merged = list(csv.DictReader(f))
    assert [r["path"] for r in merged] == [f"in/{i}.png" for i in range(7)] and list(merged[0]) == list(COLUMNS)
    assert not (tmp_path / PARTS_DIR).exists()
    write_json(tmp_path, {"world_size": 3, **counts})
    data = json.loads((tmp_path / "scores.json").read_text())
    assert data["world_size"] == 3 and data["failed"] == 1
    assert data["images"][1] == {"path": "in/1.png", "map": "1.png.png", "class_name": "widget", "score": 1.5,
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
