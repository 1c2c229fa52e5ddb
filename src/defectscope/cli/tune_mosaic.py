"""`defectscope tune-mosaic CONFIG`: choose FADeR/EAR's mosaic scale m on normal images only.

EAR tunes m per product. The plain inpainting U-Net (FADeR off: EAR finds m*, FADeR reuses it
as its patch size) is trained once per candidate m under a short budget, then scored on the
held-out normal training images as they are and with a synthetic defect pasted in. The
criterion is the image AUROC of pasted vs clean per class; never test labels. The best m per
class and overall (mean over classes) are printed and written to OUTPUT/search.json; the
per-class best is for single-class runs, a multi-class run uses one m (the overall best).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from defectscope.config import ConfigError, load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("tune-mosaic", help="choose FADeR's mosaic scale on held-out normal images",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("config", help="a FADeR config, e.g. configs/fader/small.yaml")
    p.add_argument("--scales", type=int, nargs="+", default=[4, 8, 16], help="candidate mosaic scales m")
    p.add_argument("--minutes", type=float, default=3.0, help="training budget per scale")
    p.add_argument("--output", default="runs/mosaic_search", metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier search in --output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine import run as run_engine
    from defectscope.engine.environment import pick_device
    from defectscope.engine.synthetic import synthetic_auroc

    if args.minutes <= 0 or any(m <= 0 for m in args.scales):
        raise ConfigError("tune-mosaic: --minutes and every --scales value must be > 0")
    base = load_config(args.config, overrides)
    if base.model_name != "fader":
        raise ConfigError(f"{args.config}: tune-mosaic needs a fader config, got model '{base.model_name}'")
    output = Path(args.output)
    results: dict[str, dict[str, float]] = {}
    class_names: list[str] = []
    for m in args.scales:
        cfg = load_config(args.config, [
            *overrides, *fader_off(m), "--train.max_minutes", str(args.minutes), "--output_dir", str(output / f"m{m}"),
        ])
        fitted = run_engine(cfg, overwrite=args.overwrite, evaluate_test=False)
        class_names = fitted.class_names
        results[str(m)] = synthetic_auroc(fitted.model, fitted.bundle.validation, class_names, pick_device("auto"),
                                          cfg.data.eval_batch_size, cfg.train.seed)
        print(f"m = {m}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[str(m)].items()), flush=True)
    best = {name: int(max(results, key=lambda m: results[m].get(name, -1.0))) for name in [*class_names, "mean"]}
    summary = {"criterion": "image AUROC, synthetic defect vs clean, held-out normal training images",
               "minutes_per_scale": args.minutes, "config": args.config, "overrides": overrides,
               "auroc": results, "best": best}
    output.mkdir(parents=True, exist_ok=True)
    (output / "search.json").write_text(json.dumps(summary, indent=2))
    print("best m: " + ", ".join(f"{k} {v}" for k, v in summary["best"].items()))
    return 0


def fader_off(scale: int) -> list[str]:
    """Overrides that train only the inpainting U-Net at mosaic scale `scale`."""
    return ["--model.mosaic_scale", str(scale), "--model.fader", "none", "--model.inpaint_epochs", "0"]
