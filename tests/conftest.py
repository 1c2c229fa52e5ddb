"""Shared fixtures: tiny synthetic datasets (written once per session) and the real data.

Synthetic trees (see ``tests/helpers/synthetic.py`` for layouts, counts and helpers):

* ``mvtec_root``: MVTec layout, categories ``widget`` and ``gadget`` (32x32 RGB PNG).
* ``btad_root``: BTAD layout, products ``01``, ``02``, ``03`` (``ok``/``ko``, .bmp/.png).
* ``mtsd_root``: MTSD native layout (grey JPEG, soft PNG masks, non-square sizes).
* ``folder_root``: folder layout (``good``, ``defect``, ``mask``).

They are session-scoped and shared: never modify them; build a private tree with the
``make_*_tree`` helpers under ``tmp_path`` instead.

``smoke_benchmark`` (``tests/helpers/benchmarks.py``) is the output folder of the shipped
``benchmarks/smoke.yaml``, run once per session.

``shared_data_dir`` is ``../shared/data`` relative to the repository root; tests using it
are skipped when it is absent.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from helpers.benchmarks import smoke_benchmark  # noqa: F401 - session fixture: the smoke suite, run once
from helpers.synthetic import make_btad_tree, make_folder_tree, make_mtsd_tree, make_mvtec_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEMO_DIR = REPO_ROOT / "demo"


@pytest.fixture(scope="session")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("synthetic")


@pytest.fixture(scope="session")
def mvtec_root(synthetic_dir: Path) -> Path:
    return make_mvtec_tree(synthetic_dir / "mvtec")


@pytest.fixture(scope="session")
def btad_root(synthetic_dir: Path) -> Path:
    return make_btad_tree(synthetic_dir / "btad")


@pytest.fixture(scope="session")
def mtsd_root(synthetic_dir: Path) -> Path:
    return make_mtsd_tree(synthetic_dir / "mtsd")


@pytest.fixture(scope="session")
def folder_root(synthetic_dir: Path) -> Path:
    return make_folder_tree(synthetic_dir / "folder")


@pytest.fixture(scope="session")
def shared_data_dir() -> Path:
    if not SHARED_DATA_DIR.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA_DIR} (../shared/data from the repo)")
    return SHARED_DATA_DIR


@pytest.fixture(scope="session")
def demo_mtsd_root() -> Path:
    path = DEMO_DIR / "mtsd_mini"
    if not path.is_dir():
        pytest.skip(f"demo data not found at {path}")
    return path
