"""What `defectscope fit` runs without a YAML: the default detector's settings."""

import sys

import pytest

from defectscope.engine.presets import folder_config
from defectscope.models.patchcore.config import HnswSearch, TorchSearch


def test_the_default_detector_searches_its_bank_with_hnsw_where_faiss_is_installed(tmp_path, monkeypatch):
    pytest.importorskip("faiss", reason="faiss-cpu is optional (pip install faiss-cpu)")
    (tmp_path / "good").mkdir()
    cfg = folder_config(tmp_path / "good", output=tmp_path / "run")
    assert cfg.model_name == "patchcore" and cfg.model.search == HnswSearch()
    monkeypatch.setitem(sys.modules, "faiss", None)  # a machine without the faiss extra
    assert folder_config(tmp_path / "good", output=tmp_path / "run").model.search == TorchSearch()
    monkeypatch.undo()
    exact = folder_config(tmp_path / "good", output=tmp_path / "run", overrides=["--model.search", "torch"])
    assert exact.model.search == TorchSearch()
