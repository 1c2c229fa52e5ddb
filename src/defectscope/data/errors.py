"""Errors that name the file and the problem, so users never see a bare traceback."""

from __future__ import annotations

import re

from defectscope.errors import UserError

# torch's DataLoader re-raises a worker's exception in the main process as
# ``type(exc)("Caught <Type> in DataLoader worker process <n>.\nOriginal Traceback ...")``
# (torch/_utils.py, ExceptionWrapper.reraise): the worker's whole traceback as the message.
_WORKER_TEXT = re.compile(r"\ACaught (?P<type>\w+) (?P<where>in [^\n]*?)\.\nOriginal Traceback")


class DataError(UserError):
    """Bad input data: the message names the path and what is wrong with it.

    Raised in a DataLoader worker, it reaches the main process with its own message again;
    ``where`` then says which worker it came from (``None`` when raised in this process).
    """

    def __init__(self, message: str = "", *args: object) -> None:
        self.where: str | None = None
        if isinstance(message, str) and not args:
            wrapped = _WORKER_TEXT.match(message)
            if wrapped is not None and wrapped["type"] == type(self).__name__:
                self.where = wrapped["where"]
                message = _original_message(message, type(self))
        super().__init__(message, *args)


def _original_message(text: str, cls: type) -> str:
    """The message of the last exception in a formatted traceback of a ``cls`` error."""
    marker = f"{cls.__module__}.{cls.__qualname__}: "
    start = text.rfind(marker)
    if start < 0:  # an empty message: the traceback ends with the bare class name
        return ""
    return text[start + len(marker) :].rstrip("\n")
