"""A PatchCore checkpoint's bank, searched another way, as a new checkpoint (for serving and timing it).

    python scripts/with_search.py CELL/checkpoints/final runs/serve/lite0_hnsw --search hnsw

The bank, the backbone and the calibration are the checkpoint's own, untouched; only
`model.search` changes. HNSW gives the exact search's image scores (docs/results/speed.md), so
the calibration still holds; `defectscope test CKPT --model.search hnsw` checks that on a test set.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from pathlib import Path

from defectscope.engine.checkpoint import load_checkpoint, save_checkpoint
from defectscope.models.patchcore.config import Search

SEARCHES = {kind().kind: kind for kind in typing.get_args(Search)}  # the config's own choices, by name


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("out", type=Path, help="the new checkpoint folder (must not exist)")
    p.add_argument("--search", choices=sorted(SEARCHES), required=True)
    args = p.parse_args()
    if args.out.exists():
        raise SystemExit(f"{args.out} exists; name a new folder")
    checkpoint = load_checkpoint(args.checkpoint)
    if checkpoint.config.model_name != "patchcore":
        raise SystemExit(f"{args.checkpoint}: a {checkpoint.config.model_name} checkpoint; only PatchCore has a search")
    search = SEARCHES[args.search]()
    config = dataclasses.replace(checkpoint.config, model=dataclasses.replace(checkpoint.config.model, search=search))
    checkpoint.model.memory.search = search
    save_checkpoint(args.out, checkpoint.model, config, checkpoint.class_names, calibration=checkpoint.calibration,
                    step=checkpoint.step, standardizer=checkpoint.standardizer)
    print(f"{args.out}: {args.checkpoint} with model.search {args.search}")


if __name__ == "__main__":
    main()
