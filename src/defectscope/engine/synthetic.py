"""A label-free check of a trained model: held-out normal images against the same images with a
synthetic defect pasted in (CutPaste-style). Reads no test labels, so settings may be chosen by it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from defectscope.metrics import image_auroc
from defectscope.models.base import AnomalyModel


@dataclass(frozen=True)
class Paste:
    """One kind of synthetic defect: a flipped patch cut from another image of the batch (or the
    same one), pasted at a random place. Harder kinds keep a criterion from saturating: on objects
    a large opaque rectangle is caught by every setting, so it cannot tell settings apart."""

    side: tuple[float, float] = (1 / 8, 1 / 4)  # the patch's side, a share of the image's
    thin: bool = False  # a scar: the other side 1/64 to 1/32 of the image's, along a random axis
    opacity: float = 1.0  # < 1 blends the patch with what it covers
    same_image: bool = False  # cut from the image itself: in-distribution content, misplaced
    contrast: float = 0.0  # the patch's brightness scaled by 1 ± this (sign at random)


# From easy to hard; chosen before any result was seen: CutPaste's rectangle and scar, and a
# small half-transparent rectangle (a faint stain).
LADDER: dict[str, Paste] = {
    "rectangle": Paste(),
    "faint": Paste(side=(1 / 16, 1 / 8), opacity=0.5),
    "scar": Paste(thin=True, same_image=True, contrast=0.25),
}


def paste_defects(images: Tensor, generator: torch.Generator, kind: Paste = Paste()) -> Tensor:
    """Each image of the batch gets one synthetic defect of `kind`."""
    out = images.clone()
    b, _, h, w = images.shape

    def draw(low: int, high: int) -> int:
        return int(torch.randint(low, max(low, high) + 1, (1,), generator=generator))

    for k in range(b):
        rh = draw(max(1, int(h * kind.side[0])), int(h * kind.side[1]))
        rw = draw(max(1, int(w * kind.side[0])), int(w * kind.side[1]))
        if kind.thin:
            if draw(0, 1):
                rh = draw(max(1, h // 64), max(1, h // 32))
            else:
                rw = draw(max(1, w // 64), max(1, w // 32))
        sy, sx = draw(0, h - rh), draw(0, w - rw)
        ty, tx = draw(0, h - rh), draw(0, w - rw)
        source = k if kind.same_image else (k + 1) % b
        patch = images[source, :, sy : sy + rh, sx : sx + rw].flip(-1).flip(-2)
        if kind.contrast:
            patch = (patch * (1 + kind.contrast * (1 if draw(0, 1) else -1))).clamp(0, 1)
        region = out[k, :, ty : ty + rh, tx : tx + rw]
        out[k, :, ty : ty + rh, tx : tx + rw] = kind.opacity * patch + (1 - kind.opacity) * region
    return out


@torch.no_grad()
def synthetic_scores(model: AnomalyModel, validation: Dataset, device: torch.device, batch_size: int = 16,
                     seed: int = 0, kinds: Mapping[str, Paste] = LADDER,
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Image scores of the validation normals as they are and, per kind, with a defect pasted in;
    and their class ids. Each kind draws from its own generator, so adding a kind moves no other."""
    was_training = model.training
    model.eval().to(device)
    generators = {name: torch.Generator().manual_seed(seed) for name in kinds}
    loader = DataLoader(validation, batch_size=batch_size, shuffle=False)
    clean, classes = [], []
    pasted: dict[str, list[Tensor]] = {name: [] for name in kinds}
    for batch in loader:
        x = batch.image.to(device)
        clean.append(model.predict(x).image_score.cpu())
        for name, kind in kinds.items():
            pasted[name].append(model.predict(paste_defects(x, generators[name], kind).to(device)).image_score.cpu())
        classes.append(batch.class_id)
    model.train(was_training)
    return (torch.cat(clean).numpy(), {name: torch.cat(p).numpy() for name, p in pasted.items()},
            torch.cat(classes).numpy())


def ladder_criterion(model: AnomalyModel, validation: Dataset, device: torch.device, batch_size: int = 16,
                     seed: int = 0) -> dict[str, float]:
    """How well a fitted model separates each kind of the ladder from the clean held-out normals:
    per kind, the share of pasted images above the largest clean one of their class (what a
    threshold at the held-out maximum would catch) and the image AUROC, each the mean over classes;
    `caught` and `auroc` are the means over the kinds (the criterion to rank settings by)."""
    clean, pasted, classes = synthetic_scores(model, validation, device, batch_size, seed, LADDER)
    found: dict[str, float] = {"held_out": float(len(clean))}
    for name, scores in pasted.items():
        aurocs, caught = [], []
        for cid in np.unique(classes):
            c, p = clean[classes == cid], scores[classes == cid]
            aurocs.append(image_auroc(np.concatenate([c, p]), np.r_[np.zeros(len(c)), np.ones(len(p))]))
            caught.append(float((p > c.max()).mean()))
        found[f"{name}_auroc"], found[f"{name}_caught"] = float(np.mean(aurocs)), float(np.mean(caught))
    found["auroc"] = float(np.mean([found[f"{n}_auroc"] for n in LADDER]))
    found["caught"] = float(np.mean([found[f"{n}_caught"] for n in LADDER]))
    return found


def synthetic_auroc(model: AnomalyModel, validation: Dataset, class_names: list[str], device: torch.device,
                    batch_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Image AUROC, synthetic-defect (the rectangle) vs clean validation normals, per class and 'mean'."""
    clean_s, pasted, cls = synthetic_scores(model, validation, device, batch_size, seed, {"rectangle": Paste()})
    pasted_s = pasted["rectangle"]
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
