"""`defectscope demo`: train and evaluate on the small MTSD subset that ships in the repo."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.cli.common import print_results, with_save_maps
from defectscope.config import ConfigError, load_config

DEMO_CONFIG = Path("configs") / "demo.yaml"
BASELINE_CONFIG = Path("configs") / "demo_baseline.yaml"
DEMO_DATA = Path("demo") / "mtsd_demo"


def repo_root() -> Path | None:
    """The checkout this package was installed from (editable or not), if it is one."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / DEMO_CONFIG).is_file() and (base / DEMO_DATA).is_dir():
            return base
    return None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train + test on the demo data that ships in the repo (a few minutes on a CPU)")
    p.add_argument("--output", default="runs/demo", metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --output")
    p.add_argument("--no-baseline", action="store_true", help="skip the no-training line (mean image)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine import run as run_engine

    root = repo_root()
    if root is None:
        raise ConfigError(f"the demo needs the repository checkout ({DEMO_CONFIG} and {DEMO_DATA}/); "
                          "run it from the clone")
    sources = ["--data.sources", f"[{{layout: mtsd, root: '{root / DEMO_DATA}'}}]"]
    cfg = load_config(root / DEMO_CONFIG, ["--output_dir", args.output, *sources, *overrides])
    result = run_engine(with_save_maps(cfg, True), overwrite=args.overwrite)
    print_results(result.results, result.run_dir)
    if args.no_baseline:
        return 0
    baseline_cfg = load_config(root / BASELINE_CONFIG, ["--output_dir", str(Path(args.output) / "baseline"), *sources])
    same_split = baseline_cfg.data == cfg.data  # then the decoded images can be reused
    baseline = run_engine(baseline_cfg, overwrite=args.overwrite, bundle=result.bundle if same_split else None)
    print(compare_line(cfg.model_name, result.results, baseline.results))
    return 0


def compare_line(name: str, model: dict, baseline: dict) -> str:
    """The demo's verdict: the model's image AUROC beside the no-training line's, both with intervals."""

    def auroc(results: dict) -> str:
        value = results["mean"]["image_auroc"]
        low, high = (results.get("intervals") or {}).get(next(iter(results["categories"])), {}).get(
            "image_auroc", [float("nan")] * 2)
        return f"{value:.3f} (95 % interval {low:.3f}–{high:.3f})"

    return (f"image AUROC: {name} {auroc(model)}; no-training mean image {auroc(baseline)} "
            f"on {model['num_test_images']} test tiles")
