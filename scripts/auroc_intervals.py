"""95 % bootstrap intervals of a run's image and pixel AUROC, per category.

Until the engine writes them itself: reloads the run's final checkpoint, scores its test set
again (the maps are not kept in the run folder), checks the point AUROCs against the run's
results.json and prints a Markdown table with the stratified-bootstrap intervals of
`defectscope.metrics.bootstrap`:

    python docs/results/scripts/auroc_intervals.py runs/mean_image_z_mvtec [--resamples 1000] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from defectscope.data import build_datasets
from defectscope.engine import load_checkpoint, predict_dataset
from defectscope.metrics import image_auroc, image_auroc_interval, pixel_auroc, pixel_auroc_interval


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ckpt = load_checkpoint(args.run / "checkpoints" / "final")
    results = json.loads((args.run / "results.json").read_text())
    bundle = build_datasets(ckpt.config.data)
    preds = predict_dataset(ckpt.model, bundle.test, ckpt.config.data.eval_batch_size, torch.device("cpu"),
                            standardizer=ckpt.standardizer)
    print(f"{args.run}: {len(preds.labels)} test images, {args.resamples} resamples, seed {args.seed}\n")
    print("| category | image AUROC | 95 % interval | pixel AUROC | 95 % interval | seconds |")
    print("|---|---|---|---|---|---|")
    for class_id, name in enumerate(bundle.class_names):
        pick = preds.class_ids == class_id
        scores, labels, maps, masks = preds.image_scores[pick], preds.labels[pick], preds.maps[pick], preds.masks[pick]
        img, pix = image_auroc(scores, labels), pixel_auroc(maps, masks)
        for key, value in (("image_auroc", img), ("pixel_auroc", pix)):
            recorded = results["categories"][name][key]
            if not math.isclose(value, recorded, abs_tol=1e-6):
                raise SystemExit(f"{name} {key}: rescored {value:.6f} but results.json has {recorded:.6f}")
        began = time.perf_counter()
        img_ci = image_auroc_interval(scores, labels, resamples=args.resamples, seed=args.seed)
        pix_ci = pixel_auroc_interval(maps, masks, resamples=args.resamples, seed=args.seed)
        seconds = time.perf_counter() - began
        print(f"| {name} | {img:.3f} | {img_ci[0]:.3f}–{img_ci[1]:.3f} | {pix:.3f} | "
              f"{pix_ci[0]:.3f}–{pix_ci[1]:.3f} | {seconds:.1f} |")
    print("\n(normal/defective test images per category: "
          + ", ".join(f"{n} {int(np.sum((preds.class_ids == k) & (preds.labels == 0)))}/"
                      f"{int(np.sum((preds.class_ids == k) & (preds.labels == 1)))}"
                      for k, n in enumerate(bundle.class_names)) + ")")


if __name__ == "__main__":
    main()
