"""`defectscope predict CHECKPOINT INPUT...`: score new images, write heatmaps and a score table."""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from defectscope.cli.common import pick_device
from defectscope.data.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="score images or folders of images with a trained model")
    p.add_argument("checkpoint", help="a run's checkpoints/final folder or its model.safetensors")
    p.add_argument("inputs", nargs="+", help="image files and/or folders (searched recursively)")
    p.add_argument("--output", default="predictions", metavar="DIR", help="where scores and maps go")
    p.add_argument("--class-name", default=None, help="category of the images for multi-class models")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.add_argument("--no-maps", action="store_true", help="write scores only")
    p.set_defaults(run=run)


def collect_images(inputs: list[str]) -> list[Path]:
    found: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            raise DataError(f"{path}: no such file or folder")
    if not found:
        raise DataError(f"no images found in {', '.join(inputs)} (suffixes: {', '.join(sorted(IMAGE_SUFFIXES))})")
    return found


@torch.no_grad()
def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.data.image_io import load_image
    from defectscope.data.transforms import resize_image
    from defectscope.engine import load_checkpoint
    from defectscope.engine.gallery import overlay_panel

    ckpt = load_checkpoint(args.checkpoint)
    size = ckpt.config.data.image_size
    class_id = 0
    if args.class_name is not None:
        if args.class_name not in ckpt.class_names:
            raise DataError(f"--class-name {args.class_name!r} is not one of {ckpt.class_names}")
        class_id = ckpt.class_names.index(args.class_name)
    device = pick_device(args.device)
    ckpt.model.eval().to(device)
    out = Path(args.output)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    threshold = ckpt.calibration.get("image_threshold")
    scale = ckpt.calibration.get("pixel_threshold") or 0.0
    paths = collect_images(args.inputs)
    rows = []
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images = torch.stack([resize_image(load_image(p), size) for p in chunk]).to(device)
        class_ids = torch.full((len(chunk),), class_id, device=device)
        result = ckpt.predict(images, class_ids)
        for i, path in enumerate(chunk):
            score = float(result.image_score[i])
            row = {"path": str(path), "score": score,
                   "defective": None if threshold is None else bool(score > threshold)}
            rows.append(row)
            if not args.no_maps:
                amap = result.anomaly_map[i].float().cpu().numpy()
                image = (images[i].permute(1, 2, 0).cpu().numpy() * 255).astype(np.uint8)
                panel = overlay_panel(image, amap, np.zeros(amap.shape, bool), scale or float(amap.max()) or 1.0)
                Image.fromarray(panel[:, : 2 * size]).save(out / "maps" / f"{path.stem}.png")
    with (out / "scores.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "score", "defective"])
        writer.writeheader()
        writer.writerows(rows)
    (out / "scores.json").write_text(json.dumps({"threshold": threshold, "images": rows}, indent=2))
    flagged = sum(1 for r in rows if r["defective"])
    print(f"scored {len(rows)} images; {flagged} above the calibrated threshold {threshold}")
    print(f"scores: {out / 'scores.csv'}  maps: {out / 'maps'}")
    return 0
