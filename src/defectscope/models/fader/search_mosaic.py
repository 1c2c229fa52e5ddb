"""Search the mosaic scale m on normal validation images only (never test labels).

EAR tunes m per product. We train the plain inpainting U-Net (FADeR off: EAR finds m*, FADeR
reuses it as its patch size) once per candidate m under a short budget, then score the held-out
normal training images twice: as they are, and with a synthetic defect pasted in (a rectangle
cut from another validation image, flipped, at a random place; CutPaste-style). The criterion
is the image AUROC of synthetic-defect vs clean per class; the best m per class and overall
(mean over classes) are printed and written to OUTPUT/search.json.

    python -m defectscope.models.fader.search_mosaic configs/fader/small.yaml --scales 4 8 16 \
        --minutes 3 [--model.mask_ratio 0.1 ...]

The per-class best m is for single-class runs; a multi-class run uses one m (the overall best).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from defectscope.config import load_config
from defectscope.data import build_datasets
from defectscope.metrics import image_auroc


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
def synthetic_auroc(model: torch.nn.Module, validation: torch.utils.data.Dataset, class_names: list[str],
                    batch_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Image AUROC, synthetic-defect vs clean validation normals, per class and 'mean'."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(validation, batch_size=batch_size, shuffle=False)
    clean, pasted, classes = [], [], []
    device = next(model.parameters()).device
    for batch in loader:
        x = batch.image.to(device)
        clean.append(model.predict(x).image_score.cpu())
        pasted.append(model.predict(paste_defects(x, generator).to(device)).image_score.cpu())
        classes.append(batch.class_id)
    clean_s, pasted_s, cls = torch.cat(clean).numpy(), torch.cat(pasted).numpy(), torch.cat(classes).numpy()
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


def search(config: str, scales: list[int], minutes: float, output: Path, overrides: list[str]) -> dict:
    from defectscope.engine import fit

    results: dict[str, dict[str, float]] = {}
    class_names: list[str] = []
    for m in scales:
        cfg = load_config(config, [
            *overrides, "--model.mosaic_scale", str(m), "--model.fader", "false", "--model.inpaint_epochs", "0",
            "--train.max_minutes", str(minutes), "--output_dir", str(output / f"m{m}"),
        ])
        fitted = fit(cfg, overwrite=True)
        bundle = build_datasets(cfg.data)
        class_names = list(bundle.class_names)
        results[str(m)] = synthetic_auroc(fitted.model, bundle.validation, class_names, cfg.data.eval_batch_size,
                                          cfg.train.seed)
        print(f"m = {m}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[str(m)].items()), flush=True)
    best = {name: int(max(results, key=lambda m: results[m].get(name, -1.0))) for name in [*class_names, "mean"]}
    summary = {"criterion": "image AUROC, synthetic defect vs clean, held-out normal training images",
               "minutes_per_scale": minutes, "config": config, "overrides": overrides,
               "auroc": results, "best": best}
    output.mkdir(parents=True, exist_ok=True)
    (output / "search.json").write_text(json.dumps(summary, indent=2))
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m defectscope.models.fader.search_mosaic", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config")
    parser.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16])
    parser.add_argument("--minutes", type=float, default=3.0, help="training budget per scale")
    parser.add_argument("--output", default=None, help="default: runs/mosaic_search")
    args, overrides = parser.parse_known_args(argv)
    summary = search(args.config, args.scales, args.minutes, Path(args.output or "runs/mosaic_search"), overrides)
    print("best m: " + ", ".join(f"{k} {v}" for k, v in summary["best"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
