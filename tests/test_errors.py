"""Every error meant for the user derives from UserError, the one class the command line catches (exit 2)."""

from __future__ import annotations

import pytest

from defectscope.cli.main import main
from defectscope.config import ConfigError
from defectscope.data.errors import DataError
from defectscope.engine.checkpoint import CheckpointError
from defectscope.engine.run import RunExistsError
from defectscope.errors import SHOWN_LIMIT, UserError, shown
from defectscope.export.metadata import ExportError
from defectscope.layers.backbones import BackboneWeightsError
from defectscope.report.errors import ReportError


@pytest.mark.parametrize("error", [ConfigError, DataError, CheckpointError, RunExistsError, ExportError,
                                   BackboneWeightsError, ReportError])
def test_each_concerns_error_is_a_user_error(error):
    assert issubclass(error, UserError) and issubclass(error, ValueError)  # ValueError: what callers caught before


def test_the_command_line_prints_a_user_error_and_exits_2(tmp_path, capsys):
    missing = tmp_path / "none" / "model.safetensors"
    assert main(["test", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("defectscope test: error: ") and str(missing.parent) in err and "Traceback" not in err


@pytest.mark.parametrize(("value", "expected"), [
    ("short", "'short'"), (2**63, str(2**63)), (1e308, "1e+308"), ([1, 2], "[1, 2]"), (None, "None"),
])
def test_shown_repeats_a_small_value_as_its_repr(value, expected):
    assert shown(value) == expected


@pytest.mark.parametrize("value", ["x" * 10_000_000, 10**5000, list(range(100_000)), [10**5000], {"k": "v" * 1000}],
                         ids=["10MB-str", "int-5000-digits", "long-list", "list-of-huge-int", "dict"])
def test_shown_cuts_a_huge_value_to_the_limit(value):
    text = shown(value)
    assert 0 < len(text) <= SHOWN_LIMIT
    assert text.endswith("…") or text.startswith("<")
