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
class SyntheticDefect:
    """One kind of synthetic defect: a flipped patch cut from another good image of the same class
    (or from the image itself), pasted at a random place. Harder kinds keep a criterion from
    saturating: on objects a large opaque rectangle is caught by every setting, so it cannot tell
    settings apart."""

    side: tuple[float, float] = (1 / 8, 1 / 4)  # the patch's side, a share of the image's
    thin: bool = False  # a scar: the other side 1/64 to 1/32 of the image's, along a random axis
    opacity: float = 1.0  # < 1 blends the patch with what it covers
    same_image: bool = False  # cut from the image itself: in-distribution content, misplaced
    contrast: float = 0.0  # the patch's brightness scaled by 1 ± this (sign at random)


# From easy to hard; chosen before any result was seen: CutPaste's rectangle and scar, and a
# small half-transparent rectangle (a faint stain).
LADDER: dict[str, SyntheticDefect] = {
    "rectangle": SyntheticDefect(),
    "faint": SyntheticDefect(side=(1 / 16, 1 / 8), opacity=0.5),
    "scar": SyntheticDefect(thin=True, same_image=True, contrast=0.25),
}


def paste_defects(images: Tensor, generator: torch.Generator, kind: SyntheticDefect = SyntheticDefect(),
                  donors: Tensor | None = None) -> Tensor:
    """Each image gets one synthetic defect of `kind`, cut from the same row of `donors` (default:
    the next image of the batch) unless the kind cuts from the image itself."""
    out = images.clone()
    b, _, h, w = images.shape
    donors = images.roll(-1, dims=0) if donors is None else donors

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
        source = images[k] if kind.same_image else donors[k]
        patch = source[:, sy : sy + rh, sx : sx + rw].flip(-1).flip(-2)
        if kind.contrast:
            patch = (patch * (1 + kind.contrast * (1 if draw(0, 1) else -1))).clamp(0, 1)
        region = out[k, :, ty : ty + rh, tx : tx + rw]
        out[k, :, ty : ty + rh, tx : tx + rw] = kind.opacity * patch + (1 - kind.opacity) * region
    return out


def donor_indices(validation: Dataset) -> list[int]:
    """For each held-out image, the next one of its class (wrapping; itself when alone): a pasted
    patch comes from a part like it, and the pairs do not depend on the batch size."""
    records, class_ids = getattr(validation, "records", None), getattr(validation, "class_ids", None)
    if records is not None and class_ids is not None:
        classes = [class_ids[record.category] for record in records]
    else:
        classes = [int(validation[i].class_id) for i in range(len(validation))]  # type: ignore[arg-type]
    members: dict[int, list[int]] = {}
    for index, cid in enumerate(classes):
        members.setdefault(cid, []).append(index)
    donors = list(range(len(classes)))
    for same in members.values():
        for j, index in enumerate(same):
            donors[index] = same[(j + 1) % len(same)]
    return donors


@torch.no_grad()
def synthetic_scores(model: AnomalyModel, validation: Dataset, device: torch.device, batch_size: int = 16,
                     seed: int = 0, kinds: Mapping[str, SyntheticDefect] = LADDER,
                     ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Image scores of the validation normals as they are and, per kind, with a defect pasted in;
    and their class ids. Each kind draws from its own generator, so adding a kind moves no other."""
    was_training = model.training
    model.eval().to(device)
    generators = {name: torch.Generator().manual_seed(seed) for name in kinds}
    donors = donor_indices(validation)
    loader = DataLoader(validation, batch_size=batch_size, shuffle=False)
    clean, classes = [], []
    pasted: dict[str, list[Tensor]] = {name: [] for name in kinds}
    start = 0
    for batch in loader:
        x = batch.image
        given = torch.stack([validation[d].image for d in donors[start : start + len(x)]])  # type: ignore[index]
        start += len(x)
        clean.append(model.predict(x.to(device)).image_score.cpu())
        for name, kind in kinds.items():
            defective = paste_defects(x, generators[name], kind, given)
            pasted[name].append(model.predict(defective.to(device)).image_score.cpu())
        classes.append(batch.class_id)
    model.train(was_training)
    return (torch.cat(clean).numpy(), {name: torch.cat(p).numpy() for name, p in pasted.items()},
            torch.cat(classes).numpy())


def choose_by_ladder(found: Mapping[str, Mapping[str, float]], baseline: str) -> str:
    """The setting to use: `baseline` unless another catches more pasted defects by at least one
    held-out image per kind (less is what a single image moves, and the best of several noisy
    figures leans high); among those the most caught, then the highest AUROC."""
    margin = 1 / min(f["held_out"] for f in found.values())
    best = max(found, key=lambda name: (found[name]["caught"], found[name]["auroc"], name == baseline))
    return best if found[best]["caught"] >= found[baseline]["caught"] + margin else baseline


def separation_by_class(clean: np.ndarray, pasted: np.ndarray, classes: np.ndarray,
                        ) -> dict[int, tuple[float, float]]:
    """Per class id: the image AUROC of pasted against clean, and the share of pasted images above
    the largest clean one (what a threshold at the held-out maximum would catch)."""
    out = {}
    for cid in np.unique(classes):
        c, p = clean[classes == cid], pasted[classes == cid]
        auroc = image_auroc(np.concatenate([c, p]), np.r_[np.zeros(len(c)), np.ones(len(p))])
        out[int(cid)] = (float(auroc), float((p > c.max()).mean()))
    return out


def ladder_criterion(model: AnomalyModel, validation: Dataset, device: torch.device, batch_size: int = 16,
                     seed: int = 0) -> dict[str, float]:
    """How well a fitted model separates each kind of the ladder from the clean held-out normals:
    per kind, the share of pasted images above the largest clean one of their class (what a
    threshold at the held-out maximum would catch) and the image AUROC, each the mean over classes;
    `caught` and `auroc` are the means over the kinds (the criterion to rank settings by)."""
    clean, pasted, classes = synthetic_scores(model, validation, device, batch_size, seed, LADDER)
    found: dict[str, float] = {"held_out": float(len(clean))}
    for name, scores in pasted.items():
        per_class = separation_by_class(clean, scores, classes).values()
        found[f"{name}_auroc"] = float(np.mean([auroc for auroc, _ in per_class]))
        found[f"{name}_caught"] = float(np.mean([caught for _, caught in per_class]))
    found["auroc"] = float(np.mean([found[f"{n}_auroc"] for n in LADDER]))
    found["caught"] = float(np.mean([found[f"{n}_caught"] for n in LADDER]))
    return found


def synthetic_auroc(model: AnomalyModel, validation: Dataset, class_names: list[str], device: torch.device,
                    batch_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Image AUROC, synthetic-defect (the rectangle) vs clean validation normals, per class and 'mean'."""
    rectangle = {"rectangle": LADDER["rectangle"]}
    clean, pasted, classes = synthetic_scores(model, validation, device, batch_size, seed, rectangle)
    found = separation_by_class(clean, pasted["rectangle"], classes)
    counts = dict(zip(*np.unique(classes, return_counts=True), strict=True))
    out = {name: found[cid][0] for cid, name in enumerate(class_names) if counts.get(cid, 0) >= 2}
    out["mean"] = float(np.mean(list(out.values()))) if out else float("nan")
    return out
