"""A dataset root (and each folder of the folder layout) must be a path written as text: `root: 5`
was read as the folder "5"; now the config loader refuses it naming the key, and so does
build_records for a DataConfig made in code, which skips the loader."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectscope.config import ConfigError, build_config, load_config
from defectscope.data.config import DataConfig, SourceConfig
from defectscope.data.dataset import build_records
from defectscope.data.errors import DataError


@pytest.mark.parametrize("root", ["5", "5.0", "true", "[a]", "{a: 1}", "null"])
def test_a_root_that_is_not_text_is_refused_naming_the_key(root):
    with pytest.raises(ConfigError, match=r"'data.sources\[0\].root' must be a path written as text"):
        load_config(None, ["--data.sources", f"[{{layout: mtsd, root: {root}}}]"])


def test_a_folder_name_that_is_not_text_is_refused_in_a_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("data:\n  sources:\n    - {layout: folder, root: /data, good_dir: 2019}\n")
    with pytest.raises(ConfigError, match=rf"^{path}: 'data.sources\[0\].good_dir' must be a path written as text"):
        load_config(path)


def test_a_quoted_number_is_a_path():
    cfg = load_config(None, ["--data.sources", "[{layout: mtsd, root: '5'}]"])
    assert cfg.data.sources[0].root == "5"


@pytest.mark.parametrize(("root", "match"), [
    ("a\0b", "holds a NUL byte"), ("x" * 5000, "is 5000 characters long; at most 4096"),
])
def test_a_root_no_file_system_takes_is_refused(root, match):
    with pytest.raises(ConfigError, match=rf"'data.sources\[0\].root' {match}"):
        build_config({"data": {"sources": [{"layout": "mtsd", "root": root}]}}, "run.yaml")


@pytest.mark.parametrize("root", [5, None, b"/data"])
def test_a_data_config_built_in_code_is_checked_by_build_records(root):
    cfg = DataConfig(sources=(SourceConfig(layout="mtsd", root=root),))
    with pytest.raises(DataError, match=r"data.sources\[0\].root must be a path written as text"):
        build_records(cfg)


def test_a_path_object_is_a_root(tmp_path):
    cfg = DataConfig(sources=(SourceConfig(layout="mtsd", root=Path(tmp_path / "nowhere")),))
    with pytest.raises(DataError, match="nowhere"):  # read as a path: the folder is missing, not the type wrong
        build_records(cfg)
