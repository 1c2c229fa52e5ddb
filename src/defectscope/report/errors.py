"""The report's one error type, kept apart so the CLI can catch it without importing matplotlib."""

from __future__ import annotations

from defectscope.errors import UserError


class ReportError(UserError):
    """A folder holds nothing a report can be made from; the message names it."""
