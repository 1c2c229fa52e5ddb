"""`defectscope demo`: train and evaluate on the small MTSD subset that ships in the repo."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.cli.common import print_results, with_save_maps
from defectscope.config import ConfigError, load_config

DEMO_CONFIG = Path("configs") / "demo.yaml"


def repo_root() -> Path | None:
    """The checkout this package was installed from (editable or not), if it is one."""
    for base in (Path.cwd(), *Path(__file__).resolve().parents):
        if (base / DEMO_CONFIG).is_file() and (base / "demo").is_dir():
            return base
    return None


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train + test on the demo data that ships in the repo (a few minutes on a CPU)")
    p.add_argument("--output", default="runs/demo", metavar="DIR")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine import run as run_engine

    root = repo_root()
    if root is None:
        raise ConfigError(f"the demo needs the repository checkout ({DEMO_CONFIG} and demo/); run it from the clone")
    data_root = root / "demo" / "mtsd_mini"
    cfg = load_config(root / DEMO_CONFIG, [
        "--output_dir", args.output, "--data.sources", f"[{{layout: mtsd, root: '{data_root}'}}]", *overrides,
    ])
    result = run_engine(with_save_maps(cfg, True), overwrite=args.overwrite)
    print_results(result.results, result.run_dir)
    return 0
