"""Mean-image settings: the no-training baseline (per-pixel statistics of the normal images)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

from defectscope.checks import PositiveWeight, Sigma


@dataclass(frozen=True)
class MeanImageConfig:
    # "zscore": sqrt(Σ_c ((x_c − μ_c) / σ_c)²); "sqdiff": Σ_c (x_c − μ_c)², σ unused
    map: Literal["zscore", "sqdiff"] = "zscore"
    # Gaussian σ in pixels *at 256 px*, scaled by image_size / 256 so that it covers the same
    # share of the image at any size (σ 4 at 256 px, 0.5 at 32 px)
    smoothing_sigma: Sigma = 4.0
    sigma_reference_size: ClassVar[int] = 256  # the size smoothing_sigma is given at (config.RunConfig reads it)
    # lower bound on σ (image range [0, 1]): one 8-bit grey level, the finest difference the
    # stored images can express; a pixel that never varies in training (a saturated background)
    # would otherwise turn a change of one level into an unbounded z-score
    std_floor: PositiveWeight = 1.0 / 255.0
