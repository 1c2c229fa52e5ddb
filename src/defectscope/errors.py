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
