"""Export fixtures: one small exported checkpoint shared by the tests that need any exported model."""

from __future__ import annotations

import pytest

from helpers.exporting import Exported, export


@pytest.fixture(scope="session")
def standardised(tmp_path_factory: pytest.TempPathFactory) -> Exported:
    """AE-SSIM at 32 px, one class, z-scored maps: the MapStandardizer is in the graph and there is no class_ids."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    return export("ae_ssim", tmp_path_factory.mktemp("export_std"), 32, ("widget",), standardize=True)
