"""Errors that name the file and the problem, so users never see a bare traceback."""

from __future__ import annotations


class DataError(ValueError):
    """Bad input data: the message names the path and what is wrong with it."""
