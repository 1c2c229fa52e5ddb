"""FADeR/EAR scoring (RIAD's): anomaly map 1 − MSGMS(I, Î), mean-filtered; image score from it."""

from __future__ import annotations

from torch import Tensor

from defectscope.layers.msgms import msgms_map


def anomaly_map(images: Tensor, reconstructions: Tensor, scales: int, mean_filter: int) -> Tensor:
    """Both in [0, 1]; returns (B, H, W), 0 where the reconstruction keeps the gradients."""
    return msgms_map(images, reconstructions, scales, mean_filter)
