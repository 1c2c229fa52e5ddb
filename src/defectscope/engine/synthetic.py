"""A label-free check of a trained model: held-out normal images against the same images with a
synthetic defect pasted in (CutPaste-style). Reads no test labels, so settings may be chosen by it."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from defectscope.metrics import image_auroc
from defectscope.models.base import AnomalyModel


def paste_defects(images: Tensor, generator: torch.Generator) -> Tensor:
    """Each image gets a flipped rectangle (1/8 to 1/4 of the side) cut from the next image."""
    out = images.clone()
    b, _, h, w = images.shape
    for k in range(b):
        rh = int(torch.randint(h // 8, h // 4 + 1, (1,), generator=generator))
        rw = int(torch.randint(w // 8, w // 4 + 1, (1,), generator=generator))
        sy, sx = (int(torch.randint(0, n - r + 1, (1,), generator=generator)) for n, r in ((h, rh), (w, rw)))
        ty, tx = (int(torch.randint(0, n - r + 1, (1,), generator=generator)) for n, r in ((h, rh), (w, rw)))
        patch = images[(k + 1) % b, :, sy : sy + rh, sx : sx + rw].flip(-1).flip(-2)
        out[k, :, ty : ty + rh, tx : tx + rw] = patch
    return out


@torch.no_grad()
def synthetic_scores(model: AnomalyModel, validation: Dataset, device: torch.device, batch_size: int = 16,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Image scores of the validation normals as they are and with a defect pasted in, and their class ids."""
    was_training = model.training
    model.eval().to(device)
    generator = torch.Generator().manual_seed(seed)
    loader = DataLoader(validation, batch_size=batch_size, shuffle=False)
    clean, pasted, classes = [], [], []
    for batch in loader:
        x = batch.image.to(device)
        clean.append(model.predict(x).image_score.cpu())
        pasted.append(model.predict(paste_defects(x, generator).to(device)).image_score.cpu())
        classes.append(batch.class_id)
    model.train(was_training)
    return torch.cat(clean).numpy(), torch.cat(pasted).numpy(), torch.cat(classes).numpy()


def synthetic_auroc(model: AnomalyModel, validation: Dataset, class_names: list[str], device: torch.device,
                    batch_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Image AUROC, synthetic-defect vs clean validation normals, per class and 'mean'."""
    clean_s, pasted_s, cls = synthetic_scores(model, validation, device, batch_size, seed)
    out: dict[str, float] = {}
    for cid, name in enumerate(class_names):
        pick = cls == cid
        if pick.sum() < 2:
            continue
        scores = np.concatenate([clean_s[pick], pasted_s[pick]])
        labels = np.concatenate([np.zeros(pick.sum()), np.ones(pick.sum())])
        out[name] = float(image_auroc(scores, labels))
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out
