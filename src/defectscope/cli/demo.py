"""`defectscope demo`: train and evaluate on the small MTSD subset that ships in the repo."""

from __future__ import annotations

import argparse
from pathlib import Path

from defectscope.config import ConfigError

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
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.cli import train

    root = repo_root()
    if root is None:
        raise ConfigError(f"the demo needs the repository checkout ({DEMO_CONFIG} and demo/); run it from the clone")
    demo_args = argparse.Namespace(
        config=str(root / DEMO_CONFIG), resume=None, no_test=False, save_maps=True, overwrite=True, verb="demo",
    )
    data_root = root / "demo" / "mtsd_mini"
    return train.run(
        demo_args,
        ["--output_dir", args.output, "--data.sources", f"[{{layout: mtsd, root: '{data_root}'}}]", *overrides],
    )
