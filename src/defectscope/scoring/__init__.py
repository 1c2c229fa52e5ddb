"""Torch-free scoring: the calibration, the path from a network's maps to verdicts, the numpy resizes.

Both runtimes use it, the torch model (`defectscope.engine`) and the exported graph
(`defectscope.export.runtime`), so they read images, stitch tiles, hide borders, standardise,
score and decide the same way.
"""

from defectscope.scoring.calibration import Calibration, CalibrationError, CalibrationWarning, Threshold
from defectscope.scoring.detection import Detection, DetectorLike
from defectscope.scoring.path import MapStandardizer, ScoringPath, TileGrid, Viewing, score_canvases

__all__ = ["Calibration", "CalibrationError", "CalibrationWarning", "Detection", "DetectorLike", "MapStandardizer",
           "ScoringPath", "Threshold", "TileGrid", "Viewing", "score_canvases"]
