"""What `defectscope fit` runs without a YAML: the default detector's settings."""

from defectscope.engine.presets import folder_config
from defectscope.models.patchcore.config import HnswSearch, TorchSearch


def test_the_default_detector_searches_its_bank_with_hnsw_unless_told(tmp_path):
    (tmp_path / "good").mkdir()
    cfg = folder_config(tmp_path / "good", output=tmp_path / "run")
    assert cfg.model_name == "patchcore" and cfg.model.search == HnswSearch()
    exact = folder_config(tmp_path / "good", output=tmp_path / "run", overrides=["--model.search", "torch"])
    assert exact.model.search == TorchSearch()
