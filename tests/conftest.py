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

Fuzz tests (marker ``fuzz``, hypothesis): a few dozen fixed examples per loader by default;
``--fuzz`` runs 10,000 random ones per test and ``--fuzz-log PATH`` writes one outcome per
example for ``scripts/fuzz_outcomes.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

import helpers.fuzzlog
from helpers.benchmarks import smoke_benchmark  # noqa: F401 - session fixture: the smoke suite, run once
from helpers.synthetic import make_btad_tree, make_folder_tree, make_mtsd_tree, make_mvtec_tree

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA_DIR = REPO_ROOT.parent / "shared" / "data"
DEMO_DIR = REPO_ROOT / "demo"

FUZZ_EXAMPLES = 10_000  # per test under --fuzz
# Default: the same few dozen examples every run (derandomize), so a plain pytest stays fast and
# repeatable; --fuzz draws fresh random examples. The deadline is per example (hypothesis re-runs
# a slow one before failing): it catches hangs and decompression bombs, not ordinary jitter.
_FUZZ_COMMON = dict(deadline=3000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("defectscope", max_examples=30, derandomize=True, database=None, **_FUZZ_COMMON)
settings.register_profile("defectscope-fuzz", max_examples=FUZZ_EXAMPLES, **_FUZZ_COMMON)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("defectscope")
    group.addoption("--fuzz", action="store_true", help=f"fuzz tests draw {FUZZ_EXAMPLES:,} random examples each")
    group.addoption("--fuzz-log", default=None, metavar="PATH", help="append one JSON line per fuzz example")


def pytest_configure(config: pytest.Config) -> None:
    settings.load_profile("defectscope-fuzz" if config.getoption("--fuzz") else "defectscope")
    log = config.getoption("--fuzz-log")
    helpers.fuzzlog.LOG_PATH = Path(log).resolve() if log else None


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
