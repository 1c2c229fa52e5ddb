"""Does the label-free ladder tell which working size catches more? PatchCore fitted with `fit`'s
hold-out at several pixel budgets, each scored by the ladder of synthetic defects pasted into the
held-out good parts (`engine.synthetic.ladder_criterion`, the criterion `fit --features auto` uses).

    python scripts/size_ladder.py runs/data/pill_good --features shipped --pixels 65536 102400 147456 \
        --output runs/size_ladder/pill
    python scripts/size_ladder.py runs/data/mtsd_good --features with_last --pixels 147456 --coreset-ratio 0.25 \
        --output runs/size_ladder/mtsd_bank25

Reads no defect image and no test label. Writes OUTPUT/<pixels>/ (one run per budget) and
OUTPUT/ladder.json; prints one line per budget. An earlier run in OUTPUT is refused unless --overwrite.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from defectscope.data.config import AutoSize
from defectscope.data.dataset import build_datasets
from defectscope.engine.feature_choice import SETTINGS, apply_setting, fit_and_ladder, patchcore_model
from defectscope.engine.files import write_text_atomic
from defectscope.engine.presets import folder_config
from defectscope.engine.working_size import resolve_working_size
from defectscope.geometry import as_hw


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("good_dir")
    parser.add_argument("--features", default="shipped", choices=SETTINGS)
    parser.add_argument("--pixels", type=int, nargs="+", default=[256 * 256, 320 * 320, 384 * 384])
    parser.add_argument("--coreset-ratio", type=float, default=None,
                        help="the bank's share of the training patches (default: the folder workflow's)")
    parser.add_argument("--output", required=True)
    parser.add_argument("--overwrite", action="store_true", help="replace earlier runs in OUTPUT")
    args = parser.parse_args()

    out = Path(args.output)
    found = {}
    for pixels in args.pixels:
        cfg = folder_config(args.good_dir, "patchcore", out / str(pixels))
        cfg, _ = resolve_working_size(dataclasses.replace(cfg, data=dataclasses.replace(
            cfg.data, image_size=AutoSize(pixels=pixels))))
        holdout = dataclasses.replace(cfg.data, validation_fraction=cfg.data.validation_fraction or 0.1)  # as fit
        model = apply_setting(patchcore_model(cfg), args.features)
        if args.coreset_ratio is not None:
            model = dataclasses.replace(model, coreset_ratio=args.coreset_ratio)
        ladder = fit_and_ladder(cfg, model, holdout, build_datasets(holdout), out / str(pixels), args.overwrite)
        found[pixels] = {"size": as_hw(cfg.data.image_size), **ladder}
        f = found[pixels]
        print(f"{pixels} px → {f['size']}: caught {f['caught']:.3f} (rectangle {f['rectangle_caught']:.2f}, "
              f"faint {f['faint_caught']:.2f}, scar {f['scar_caught']:.2f}), auroc {f['auroc']:.3f}, "
              f"held out {int(f['held_out'])}", flush=True)
    write_text_atomic(out / "ladder.json", json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
