"""Does the label-free ladder tell which working size catches more? PatchCore fitted with `fit`'s
hold-out at several pixel budgets, each scored by the ladder of synthetic defects pasted into the
held-out good parts (`engine.synthetic.ladder_criterion`, the criterion `fit --features auto` uses).

    python scripts/size_ladder.py runs/data/pill_good --features shipped --pixels 65536 102400 147456 \
        --output runs/size_ladder/pill

Reads no defect image and no test label. Writes OUTPUT/<pixels>/ (one run per budget) and
OUTPUT/ladder.json; prints one line per budget.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings
from pathlib import Path

from defectscope.config import HoldOutCalibration
from defectscope.data.config import AutoSize
from defectscope.data.dataset import build_datasets
from defectscope.engine.feature_choice import apply_setting, patchcore_model
from defectscope.engine.presets import folder_config
from defectscope.engine.run import run as run_engine
from defectscope.engine.synthetic import ladder_criterion
from defectscope.engine.working_size import resolve_working_size
from defectscope.scoring.calibration import CalibrationWarning


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("good_dir")
    parser.add_argument("--features", default="shipped", choices=["shipped", "with_last", "first_three", "sparse_bank"])
    parser.add_argument("--pixels", type=int, nargs="+", default=[256 * 256, 320 * 320, 384 * 384])
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    out = Path(args.output)
    found = {}
    for pixels in args.pixels:
        cfg = folder_config(args.good_dir, "patchcore", out / str(pixels))
        cfg = dataclasses.replace(cfg, model=apply_setting(patchcore_model(cfg), args.features),
                                  data=dataclasses.replace(cfg.data, image_size=AutoSize(pixels=pixels)))
        cfg, _ = resolve_working_size(cfg)
        holdout = dataclasses.replace(cfg.data, validation_fraction=0.1)  # as `fit --features auto` holds out
        cfg = dataclasses.replace(cfg, data=holdout,
                                  eval=dataclasses.replace(cfg.eval, calibration=HoldOutCalibration()))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CalibrationWarning)
            fitted = run_engine(cfg, overwrite=True, evaluate_test=False, bundle=build_datasets(holdout))
        found[pixels] = {"size": list(cfg.data.image_size) if isinstance(cfg.data.image_size, tuple)
                         else cfg.data.image_size,
                         **ladder_criterion(fitted.model, fitted.bundle.validation, fitted.device,
                                            cfg.data.eval_batch_size, cfg.train.seed)}
        f = found[pixels]
        print(f"{pixels} px → {f['size']}: caught {f['caught']:.3f} (rectangle {f['rectangle_caught']:.2f}, "
              f"faint {f['faint_caught']:.2f}, scar {f['scar_caught']:.2f}), auroc {f['auroc']:.3f}, "
              f"held out {int(f['held_out'])}", flush=True)
    (out / "ladder.json").write_text(json.dumps(found, indent=2))


if __name__ == "__main__":
    main()
