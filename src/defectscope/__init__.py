"""defectscope: unsupervised visual defect detection.

Learn what normal looks like from images of good parts, then score new images and show where
the defect is.

The model registry is imported on first use, so that a machine running only an exported model
(`defectscope.export.runtime`, numpy and onnxruntime) imports this package without torch.
"""

from __future__ import annotations

from typing import Any

from defectscope.version import __version__


def __getattr__(name: str) -> Any:
    if name in ("MODELS", "create_model"):
        from defectscope import models

        return getattr(models, name)
    raise AttributeError(f"module 'defectscope' has no attribute {name!r}")


def load_checkpoint(path: str):  # noqa: ANN201 - re-export with a lazy import
    """Load a trained model (weights + config + calibration) from a checkpoint folder or file."""
    from defectscope.engine.checkpoint import load_checkpoint as _load

    return _load(path)


__all__ = ["MODELS", "__version__", "create_model", "load_checkpoint"]
