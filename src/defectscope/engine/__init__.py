"""Training, evaluation and checkpoints; knows models only through models.base.

`run` is the one entry point the verbs use: fit (or score given weights), calibrate, save and
evaluate the model in memory.
"""

from defectscope.engine.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from defectscope.engine.evaluate import evaluate
from defectscope.engine.fit import FitResult, fit, make_fabric
from defectscope.engine.predictions import Predictions, predict_dataset
from defectscope.engine.run import RunExistsError, RunResult, build_model, run

__all__ = [
    "Checkpoint", "CheckpointError", "FitResult", "Predictions", "RunExistsError", "RunResult", "build_model",
    "evaluate", "fit", "load_checkpoint", "make_fabric", "predict_dataset", "run", "save_checkpoint",
]
