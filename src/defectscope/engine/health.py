"""Did training learn anything? The model's reconstruction of held-out normal images against the
plainest reference there is: the class's mean training image, which needs no training at all.

Loss as the reconstruction models train with it: L1 + L2 on images scaled to [−1, 1]. A model whose
held-out loss is not below the mean image's has learned nothing a mean image does not know, however
its training loss fell; the run says so in its log, results and report.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset

from defectscope.models.base import AnomalyModel


def _loss(images: torch.Tensor, rebuilt: torch.Tensor) -> torch.Tensor:
    """Per image: mean |x − r| + mean (x − r)² with both in [−1, 1]."""
    diff = (2 * images - 1) - (2 * rebuilt - 1)
    return diff.abs().flatten(1).mean(1) + diff.pow(2).flatten(1).mean(1)


@torch.no_grad()
def class_mean_images(train_set: Dataset, num_classes: int, batch_size: int) -> torch.Tensor:
    """(C, 3, H, W) per-class mean of the training images (float64 sums; empty classes stay 0)."""
    sums, counts = None, torch.zeros(num_classes, dtype=torch.float64)
    for batch in DataLoader(train_set, batch_size=batch_size, shuffle=False):
        images = batch.image.double()
        if sums is None:
            sums = torch.zeros(num_classes, *images.shape[1:], dtype=torch.float64)
        sums.index_add_(0, batch.class_id.long(), images)
        counts += torch.bincount(batch.class_id.long(), minlength=num_classes).double()
    if sums is None:
        raise ValueError("no training images to average")
    return (sums / counts.clamp(min=1).view(-1, 1, 1, 1)).float()


@torch.no_grad()
def training_health(
    model: AnomalyModel, train_set: Dataset, validation: Dataset, num_classes: int, batch_size: int,
    device: torch.device,
) -> dict[str, Any]:
    """Held-out reconstruction loss of the model and of the mean image, the model's own diagnosis, and
    `warnings` (plain sentences) for what a user must know before trusting the scores."""
    health: dict[str, Any] = {"warnings": []}
    if len(validation) == 0:
        return health
    was_training = model.training
    model.eval().to(device)
    means = None
    model_loss, mean_loss, count = 0.0, 0.0, 0
    diagnosis_sums: dict[str, float] = {}
    diagnosed = 0
    for batch in DataLoader(validation, batch_size=batch_size, shuffle=False):
        images, class_ids = batch.image.to(device), batch.class_id.to(device)
        for key, value in model.diagnose(images, class_ids).items():  # batch means, weighted by images
            diagnosis_sums[key] = diagnosis_sums.get(key, 0.0) + float(value) * len(images)
        diagnosed += len(images)
        rebuilt = model.reconstruction(images, class_ids)
        if rebuilt is None:
            continue
        if means is None:
            means = class_mean_images(train_set, num_classes, batch_size).to(device)
        model_loss += float(_loss(images, rebuilt.float()).sum())
        mean_loss += float(_loss(images, means[class_ids.long()]).sum())
        count += len(images)
    model.train(was_training)
    if count:
        health["heldout_loss"] = model_loss / count
        health["mean_image_loss"] = mean_loss / count
        if health["heldout_loss"] >= health["mean_image_loss"]:
            health["warnings"].append(
                f"the model rebuilds held-out normal images no better than their class's mean training image "
                f"(L1+L2 loss {health['heldout_loss']:.4f} against {health['mean_image_loss']:.4f}): "
                "it has learned nothing a mean image does not know; compare with the mean_image baseline"
            )
    diagnosis = {key: total / diagnosed for key, total in sorted(diagnosis_sums.items())}
    health.update(diagnosis)
    health["warnings"] += model.diagnosis_notes(diagnosis)  # on the whole held-out set, not one batch
    return health
