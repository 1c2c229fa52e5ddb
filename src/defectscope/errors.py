"""The one base of every error whose message is meant for the person running defectscope.

A leaf module (it imports nothing), so that each concern's own error (ConfigError, DataError,
CheckpointError, ExportError, ReportError, BackboneWeightsError) can derive from it, and the command
line can catch them all by this one class without importing the modules that raise them, several
of which import torch: `defectscope predict model.onnx ...` and `defectscope serve model.onnx` run
on a machine without torch.
"""

from __future__ import annotations


class UserError(ValueError):
    """Something the user can fix (a setting, a file, a model); the message names it and what is wrong.

    The command line prints the message and exits with status 2, without a traceback.
    """


SHOWN_LIMIT = 80  # characters of a value an error message repeats


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """A value as an error message repeats it: its repr, cut to `limit` characters with an ellipsis.

    A 10 MB string or a list of a million items from a config must not come back whole in the
    message; an integer too long for repr (Python refuses past 4300 digits) is described instead.
    """
    if isinstance(value, int) and value.bit_length() > 256:
        text = f"<an integer of about {int(value.bit_length() * 0.30103) + 1} digits>"
    elif isinstance(value, str) and len(value) > limit:
        text = repr(value[:limit])  # repr of a slice: never the whole 10 MB
    else:
        try:
            text = repr(value)
        except (ValueError, RecursionError):  # a huge int inside a list, or nesting past the stack
            text = f"<a {type(value).__name__}>"
    return text if len(text) <= limit else text[: limit - 1] + "…"
