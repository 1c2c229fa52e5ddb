"""Mean image: per class, the per-pixel mean and spread of the normal training images.

No training and no pretrained network: one "collect" pass sums the images, and a test image
is scored by how far each pixel lies from its class's mean. The floor every learnt method
must clear; on aligned parts (MVTec bottle) it is strong, on unaligned textures it is not.
"""

from __future__ import annotations

import torch
from torch import Tensor

from defectscope.layers.scoring import gaussian_smooth, image_score
from defectscope.models.base import AnomalyModel, ModelOutput, Phase
from defectscope.models.mean_image.anomaly_map import pixel_distance
from defectscope.models.mean_image.config import MeanImageConfig

CHANNELS = 3  # the data readers always give RGB (grey images are replicated)
REFERENCE_SIZE = MeanImageConfig.sigma_reference_size  # smoothing_sigma is given in pixels at this size


class MeanImage(AnomalyModel):
    rectangular = True

    def __init__(self, config: MeanImageConfig, image_size: int | tuple[int, int], num_classes: int = 1) -> None:
        super().__init__()
        if config.map not in ("zscore", "sqdiff"):
            raise ValueError(f"model.map must be 'zscore' or 'sqdiff', got {config.map!r}")
        if config.smoothing_sigma < 0:
            raise ValueError(f"model.smoothing_sigma must be >= 0, got {config.smoothing_sigma}")
        if not config.std_floor > 0:
            raise ValueError(f"model.std_floor must be > 0, got {config.std_floor}")
        self.config = config
        self.hw = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        self.num_classes = num_classes
        shape = (num_classes, CHANNELS, *self.hw)
        # buffers, so the checkpoint carries the statistics; count 0 marks a class never seen
        self.register_buffer("mean", torch.zeros(shape))
        self.register_buffer("std", torch.ones(shape))
        self.register_buffer("count", torch.zeros(num_classes, dtype=torch.long))
        self._reset_sums()

    def _reset_sums(self) -> None:
        # float64 running sums: with values in [0, 1] and σ ≥ std_floor, E[x²] − E[x]² keeps
        # ~1e-11 relative accuracy, so no shifted (Welford) update is needed
        self._sum: Tensor | None = None
        self._sum_sq: Tensor | None = None
        self._n: Tensor | None = None

    @property
    def sigma(self) -> float:
        """Smoothing σ in pixels at this model's image size."""
        return self.config.smoothing_sigma * max(self.hw) / REFERENCE_SIZE

    def phases(self) -> list[Phase]:
        return [Phase("statistics", kind="collect")]

    def _check(self, images: Tensor, class_ids: Tensor) -> None:
        expected = (CHANNELS, *self.hw)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"mean_image: built for images (B, {', '.join(map(str, expected))}), "
                             f"got {tuple(images.shape)}")
        if class_ids.shape != (images.shape[0],):
            raise ValueError(f"mean_image: one class id per image expected, got {tuple(class_ids.shape)}")
        if len(class_ids) and (class_ids.min() < 0 or class_ids.max() >= self.num_classes):
            raise ValueError(f"mean_image: class ids must be in 0…{self.num_classes - 1}, "
                             f"got {sorted(set(class_ids.tolist()))}")

    @torch.no_grad()
    def collect(self, images: Tensor, class_ids: Tensor, phase: str) -> None:
        self._check(images, class_ids)
        if self._sum is None or self._sum_sq is None or self._n is None:
            self._sum = torch.zeros(self.mean.shape, dtype=torch.float64, device=images.device)
            self._sum_sq = torch.zeros_like(self._sum)
            self._n = torch.zeros(self.num_classes, dtype=torch.long, device=images.device)
        x = images.double()
        class_ids = class_ids.to(images.device)
        self._sum.index_add_(0, class_ids, x)
        self._sum_sq.index_add_(0, class_ids, x * x)
        self._n += torch.bincount(class_ids, minlength=self.num_classes)

    def finish_collection(self, phase: str) -> dict[str, float]:
        if self._sum is None or self._sum_sq is None or self._n is None or int(self._n.sum()) == 0:
            raise RuntimeError("mean_image: no training images were collected")
        n = self._n.clamp_min(1).double()[:, None, None, None]
        mean = self._sum / n
        # population variance (divide by n): defined for a single image, and within 0.5 % of
        # the unbiased one for the ≥ 100 images of a real class
        var = (self._sum_sq / n - mean * mean).clamp_min(0)
        self.mean.copy_(mean)
        self.std.copy_(var.sqrt().clamp_min(self.config.std_floor))
        self.count.copy_(self._n)
        self._reset_sums()
        seen = self.count[self.count > 0]
        return {"classes_fitted": float(len(seen)), "min_images_per_class": float(seen.min()) if len(seen) else 0.0}

    @torch.no_grad()
    def absorb(self, images: Tensor, class_ids: Tensor) -> dict[str, tuple[float, float]]:
        """Good images the model flagged join their class's mean and spread (`defectscope accept`).

        Exact (the two groups' sums of squares merged, Chan et al. 1979) except where σ sat at
        std_floor: the variance below the floor was not kept, and the floor stands in for it.
        """
        images, class_ids = images.to(self.mean.device), class_ids.to(self.mean.device)
        self._check(images, class_ids)
        before = float(self.count.sum())
        x = images.double()
        for c in class_ids.unique().tolist():
            new = x[class_ids == c]
            n, k = int(self.count[c]), len(new)
            mean, new_mean = self.mean[c].double(), new.mean(dim=0)
            delta = new_mean - mean
            scatter = n * self.std[c].double() ** 2 + ((new - new_mean) ** 2).sum(dim=0) + delta**2 * (n * k / (n + k))
            self.mean[c] = mean + delta * (k / (n + k))
            self.std[c] = (scatter / (n + k)).sqrt().clamp_min(self.config.std_floor)  # population σ, as fitted
            self.count[c] = n + k
        return {"images": (before, float(self.count.sum()))}

    @torch.no_grad()
    def predict(self, images: Tensor, class_ids: Tensor | None = None) -> ModelOutput:
        if class_ids is None:  # one-class models (and callers that know no class) use class 0
            class_ids = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        class_ids = class_ids.to(self.mean.device)
        # an exported graph holds only the arithmetic: its inputs were checked when it was made
        exporting = torch.compiler.is_exporting()
        if not exporting:
            self._check(images, class_ids)
        unseen = [] if exporting else sorted(set(class_ids[self.count[class_ids] == 0].tolist()))
        if unseen:
            raise ValueError(f"mean_image: class ids {unseen} had no training images (fit the model first)")
        raw = pixel_distance(images, self.mean[class_ids], self.std[class_ids], self.config.map)
        maps = gaussian_smooth(raw, self.sigma)
        return ModelOutput(maps, image_score(maps, "max"))
