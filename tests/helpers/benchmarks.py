"""The shipped smoke suite, run once per test session and shared by benchmark, report and CLI tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from defectscope.benchmark import load_suite, run_suite

REPO_ROOT = Path(__file__).resolve().parents[2]
SMOKE_SUITE = REPO_ROOT / "benchmarks" / "smoke.yaml"


@pytest.fixture(scope="session")
def smoke_benchmark(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Output folder of benchmarks/smoke.yaml (every cell finished); do not modify it."""
    out = tmp_path_factory.mktemp("smoke_benchmark")
    run = run_suite(load_suite(SMOKE_SUITE), out, log=lambda line: None)
    assert not run.failed, run.failed
    return out
