"""Elongated parts from real pixels: strips stitched side by side from MVTec AD and MTSD images.

A line-scan camera or a long part gives images several times wider than tall; the data here
are near square. This script stitches `--parts` images of one category side by side into one
strip, with their masks, so a model can be measured on elongated images whose defects are
real. A derived set, stated as such wherever it is used (docs/results/geometry.md):

* training strips: good training images only, each in exactly one strip (a shuffled partition),
  so the strips held out to calibrate share no part with the ones the model learns from;
* good test strips: good test images only (MVTec's test/good; MTSD's held-out free tiles);
* defective test strips: every defective test image once, at a random slot, beside good test
  images; its mask in its slot, zeros elsewhere.

Every part is brought to `--height` px high keeping its aspect ratio (MVTec: 256 → as is).
Output in MVTec AD's layout, one category folder per source:

    python scripts/make_strips.py ../shared/data runs/data/strips
    # → runs/data/strips/pill/{train/good,test/good,test/defect,ground_truth/defect}, …/mtsd/…
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

import numpy as np
from PIL import Image

MTSD_TEST_SHARE = 0.2  # free tiles held out for good test strips, as the MTSD reader's default


def _load(path: Path, height: int, mode: str) -> np.ndarray:
    image = Image.open(path).convert(mode)
    width = max(1, round(image.width * height / image.height))
    return np.asarray(image.resize((width, height), Image.BICUBIC) if image.height != height else image)


def _strip(images: list[np.ndarray]) -> np.ndarray:
    return np.concatenate(images, axis=1)


def _mask_of(mask_path: Path, height: int) -> np.ndarray:
    mask = Image.open(mask_path).convert("L")
    width = max(1, round(mask.width * height / mask.height))
    mask = mask.resize((width, height), Image.NEAREST) if mask.height != height else mask
    return np.where(np.asarray(mask) >= 128, 255, 0).astype(np.uint8)


def _save(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_category(out: Path, train: list[Path], test_good: list[Path], defects: list[tuple[Path, Path]],
                   parts: int, height: int, seed: int) -> None:
    rng = random.Random(seed)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"{out}: exists and is not empty; remove it first (a derived set is never overwritten)")
    # a partition, not draws with replacement: a part seen in training and again in a held-out strip
    # would make the held-out scores low and the threshold promise more than it keeps
    shuffled = rng.sample(train, len(train))
    train_strips = len(train) // parts
    for i in range(train_strips):
        chosen = shuffled[i * parts:(i + 1) * parts]
        _save(_strip([_load(p, height, "RGB") for p in chosen]), out / "train" / "good" / f"{i:04d}.png")
    for i, first in enumerate(test_good):
        others = rng.sample([p for p in test_good if p != first], parts - 1)
        chosen = [first, *others]
        rng.shuffle(chosen)
        _save(_strip([_load(p, height, "RGB") for p in chosen]), out / "test" / "good" / f"{i:04d}.png")
    for i, (image, mask) in enumerate(defects):
        slot = rng.randrange(parts)
        goods = rng.sample(test_good, parts - 1)
        row = [*goods[:slot], image, *goods[slot:]]
        pictures = [_load(p, height, "RGB") for p in row]
        masks = [_mask_of(mask, height) if p == image else np.zeros(picture.shape[:2], np.uint8)
                 for p, picture in zip(row, pictures, strict=True)]
        _save(_strip(pictures), out / "test" / "defect" / f"{i:04d}.png")
        _save(_strip(masks), out / "ground_truth" / "defect" / f"{i:04d}_mask.png")
    print(f"{out}: {train_strips} training strips, {len(test_good)} good and {len(defects)} defective test strips "
          f"of {parts} parts, {height} px high")


def mvtec(root: Path, category: str) -> tuple[list[Path], list[Path], list[tuple[Path, Path]]]:
    cat = root / "mvtec_ad" / category
    train = sorted((cat / "train" / "good").glob("*.png"))
    test_good = sorted((cat / "test" / "good").glob("*.png"))
    defects = [(p, cat / "ground_truth" / t.name / f"{p.stem}_mask.png")
               for t in sorted((cat / "test").iterdir()) if t.name != "good" for p in sorted(t.glob("*.png"))]
    return train, test_good, defects


def mtsd(root: Path, seed: int) -> tuple[list[Path], list[Path], list[tuple[Path, Path]]]:
    base = root / "mtsd"
    free = sorted((base / "MT_Free" / "Imgs").glob("*.jpg"))
    random.Random(seed).shuffle(free)
    n_test = round(MTSD_TEST_SHARE * len(free))
    defects = [(p, p.with_suffix(".png")) for d in sorted(base.glob("MT_*")) if d.name != "MT_Free"
               for p in sorted((d / "Imgs").glob("*.jpg"))]
    return sorted(free[n_test:]), sorted(free[:n_test]), defects


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="../shared/data")
    parser.add_argument("output", type=Path)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    # pill: 4 parts of 256 px → 256 × 1024 (aspect 1:4); MTSD: 3 tiles at 192 px high → about 1:3
    train, good, bad = mvtec(args.data, "pill")
    write_category(args.output / "pill", train, good, bad, parts=4, height=256, seed=args.seed)
    train, good, bad = mtsd(args.data, args.seed)
    write_category(args.output / "mtsd", train, good, bad, parts=3, height=192, seed=args.seed)


if __name__ == "__main__":
    main()
