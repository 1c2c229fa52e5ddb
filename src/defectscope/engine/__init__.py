"""Training, evaluation and checkpoints; knows models only through models.base."""

from defectscope.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from defectscope.engine.evaluate import evaluate, predict_dataset
from defectscope.engine.fit import FitResult, fit, make_fabric

__all__ = [
    "Checkpoint", "CheckpointError", "FitResult", "evaluate", "fit", "load_checkpoint",
    "make_fabric", "predict_dataset", "save_checkpoint",
]
