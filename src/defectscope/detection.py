"""What a detector returns, torch-free: the public names of `defectscope.scoring.detection`.

A machine that runs an exported model imports this module and nothing of torch.
"""

from defectscope.scoring.detection import Detection, DetectorLike, image_array, normalized_score

__all__ = ["Detection", "DetectorLike", "image_array", "normalized_score"]
