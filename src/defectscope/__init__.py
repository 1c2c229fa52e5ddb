"""defectscope: unsupervised visual defect detection.

Learn what normal looks like from images of good parts, then score new images and show where
the defect is.
"""

from defectscope.models import MODELS, create_model

__version__ = "0.1.0"


def load_checkpoint(path: str):  # noqa: ANN201 - re-export with a lazy import
    """Load a trained model (weights + config + calibration) from a checkpoint folder or file."""
    from defectscope.engine.checkpoint import load_checkpoint as _load

    return _load(path)


__all__ = ["MODELS", "__version__", "create_model", "load_checkpoint"]
