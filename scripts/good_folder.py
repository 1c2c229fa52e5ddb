"""A dataset's good training images as one plain folder, for `defectscope fit` as a user runs it.

    python scripts/good_folder.py configs/patchcore/mtsd.yaml runs/data/mtsd_good
    python scripts/good_folder.py configs/patchcore/mvtec.yaml runs/data/pill_good --category pill

Every normal image of the config's training split (the images it trains on and the ones it holds
out to calibrate; never a test image) is linked into OUT, so a `fit` on OUT followed by
`defectscope test RUN --data.sources ... --data.split.test_fraction F` on the config's data scores
exactly the test split the benchmarks use.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from defectscope.config import load_config
from defectscope.data.dataset import build_datasets


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="a config whose data section names the dataset and its split")
    p.add_argument("out", type=Path, help="the folder to make (must not exist)")
    p.add_argument("--category", default=None, help="keep one category of a multi-category config")
    args = p.parse_args()
    bundle = build_datasets(load_config(args.config, ["--data.image_size", "64"]).data)
    records = [r for r in (*bundle.train.records, *bundle.validation.records)  # type: ignore[union-attr]
               if args.category is None or r.category == args.category]
    if not records:
        raise SystemExit(f"{args.config}: no good training images" + (f" of {args.category}" if args.category else ""))
    args.out.mkdir(parents=True)
    for record in records:
        source = Path(record.image_path).resolve()
        os.symlink(source, args.out / f"{record.category}_{source.name}")
    print(f"{args.out}: {len(records)} good training images")


if __name__ == "__main__":
    main()
