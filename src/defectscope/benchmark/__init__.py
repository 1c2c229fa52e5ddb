"""Benchmarks: suites of model x dataset x setting x seed cells, run resumably, tabled beside the papers."""

from defectscope.benchmark.runner import SuiteRun, collect_results, run_suite, write_results
from defectscope.benchmark.suite import Cell, Suite, SuiteConfig, expand_cells, load_suite

__all__ = ["Cell", "Suite", "SuiteConfig", "SuiteRun", "collect_results", "expand_cells", "load_suite", "run_suite",
           "write_results"]
