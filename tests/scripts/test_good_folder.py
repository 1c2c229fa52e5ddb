"""scripts/good_folder.py: a config's good training images (train + held out, never test) as one folder."""

import sys

import pytest

from defectscope.config import load_config
from defectscope.data.dataset import build_datasets
from helpers.runs import tiny_config_file  # noqa: F401 - fixture
from helpers.scripts import load_script


def test_links_every_good_training_image_and_no_test_image(tmp_path, tiny_config_file, monkeypatch):  # noqa: F811
    config = tiny_config_file("mean_image")
    out = tmp_path / "good"
    monkeypatch.setattr(sys, "argv", ["good_folder.py", str(config), str(out)])
    load_script("good_folder").main()
    bundle = build_datasets(load_config(config).data)
    linked = {p.resolve() for p in out.iterdir()}
    expected = {r.image_path.resolve() for r in (*bundle.train.records, *bundle.validation.records)}
    assert linked == expected and not linked & {r.image_path.resolve() for r in bundle.test.records}
    with pytest.raises(FileExistsError):  # an existing folder is never filled again
        load_script("good_folder").main()
