"""predict's inputs: entries named like images that are not files are kept with their reason and never opened."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from defectscope.data.discovery import collect_inputs, find_inputs, not_a_file
from defectscope.data.errors import DataError
from defectscope.predict.job import read_image


@pytest.fixture(autouse=True)
def no_hang():
    def expire(signum, frame):
        raise TimeoutError("blocked opening a FIFO")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(30)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


def test_each_kind_of_entry_is_named_and_a_regular_file_passes(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"not decoded here")
    os.mkfifo(tmp_path / "fifo.png")
    (tmp_path / "zero.png").symlink_to("/dev/zero")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nothing")
    (tmp_path / "folder.png").mkdir()
    (tmp_path / "link.png").symlink_to(tmp_path / "ok.png")
    assert not_a_file(tmp_path / "ok.png") is None and not_a_file(tmp_path / "link.png") is None
    assert "named pipe (FIFO)" in not_a_file(tmp_path / "fifo.png")
    assert not_a_file(tmp_path / "zero.png").startswith("a symbolic link to /dev/zero, a character device")
    assert "symbolic link loop" in not_a_file(tmp_path / "loop.png")
    assert "broken link" in not_a_file(tmp_path / "gone.png")
    assert "a folder named like an image" in not_a_file(tmp_path / "folder.png")

    found = find_inputs([str(tmp_path)])
    assert [(i.relative.as_posix(), i.error is None) for i in found.images] == [
        ("fifo.png", False), ("folder.png", False), ("gone.png", False), ("link.png", True), ("loop.png", False),
        ("zero.png", False)]  # ok.png is link.png's file reached a second time
    images, skipped = collect_inputs([str(tmp_path)])  # fit's view: the readable files only
    assert [i.relative for i in images] == [Path("link.png")] and skipped == 0


def test_a_fifo_is_refused_before_it_is_opened(tmp_path):
    os.mkfifo(tmp_path / "fifo.png")
    with pytest.raises(DataError, match="named pipe"):
        read_image(tmp_path / "fifo.png", 10_000)


def test_skipped_masks_are_named_in_order(tmp_path):
    for name in ("a.jpg", "a.png", "b_mask.png", "ground_truth/c.png", "d.bmp"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    found = find_inputs([str(tmp_path)])
    assert [i.relative.as_posix() for i in found.images] == ["a.jpg", "d.bmp"]
    assert found.skipped == [tmp_path / "a.png", tmp_path / "b_mask.png", tmp_path / "ground_truth" / "c.png"]
