"""`defectscope export --output` where no file can be written is a clean error naming the path (exit 2),
found before the checkpoint is read or anything is exported; onnx need not even be installed."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

import pytest

from defectscope.cli.main import main


def export_error(checkpoint: Path, output: Path | str, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["export", str(checkpoint), "--output", str(output)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectscope export: error: --output ") and "Traceback" not in err
    assert str(checkpoint) not in err  # refused before the (missing) checkpoint was looked at
    return err


def test_a_folder_that_cannot_be_created_is_named(tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    output = tmp_path / "file" / "sub" / "part.onnx"
    err = export_error(tmp_path / "missing", output, capsys)
    assert f"--output {output}: cannot create the folder {output.parent} (Not a directory)" in err


def test_a_folder_that_takes_no_file_is_named(tmp_path, capsys, monkeypatch):
    """A read-only folder, as a user who is not root meets it (root writes anywhere, so it is simulated)."""
    def read_only(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    output = tmp_path / "part.onnx"
    err = export_error(tmp_path / "missing", output, capsys)
    assert f"--output {output}: cannot write into the folder {tmp_path} (Permission denied)" in err


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_named(tmp_path, capsys):
    folder = tmp_path / "locked"
    folder.mkdir(mode=0o555)
    try:
        err = export_error(tmp_path / "missing", folder / "part.onnx", capsys)
    finally:
        folder.chmod(0o755)
    assert "cannot write into the folder" in err


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, which takes no new file")
def test_a_folder_of_a_read_only_file_system_is_named(tmp_path, capsys):
    err = export_error(tmp_path / "missing", "/proc/part.onnx", capsys)
    assert "--output /proc/part.onnx: cannot write into the folder /proc" in err


def test_a_folder_as_the_output_is_named(tmp_path, capsys):
    err = export_error(tmp_path / "missing", tmp_path, capsys)
    assert f"--output {tmp_path}: is a folder" in err


def test_the_check_leaves_nothing_behind(tmp_path, capsys):
    output = tmp_path / "new" / "part.onnx"
    assert main(["export", str(tmp_path / "missing"), "--output", str(output)]) == 2
    err = capsys.readouterr().err  # the output was fine: the checkpoint (or the missing onnx extra) is next
    assert "checkpoint not found" in err or "is not installed" in err
    assert list(output.parent.iterdir()) == []  # no probe file left
