"""A subprocess whose Python cannot import torch, to prove that a path of defectscope never needs it.

`torch_free_env(folder)` writes a `sitecustomize.py` into `folder` and puts `folder` first on
PYTHONPATH: Python imports that module at start-up, and it puts a finder first on `sys.meta_path`
that answers every `torch` and `torch.*` import with ModuleNotFoundError, as on a machine where
torch is not installed. The checkout's own sources come next, as for the server tests.
"""

from __future__ import annotations

import os
from pathlib import Path

from helpers.serving import serve_env

BLOCKER = '''\
"""Written by tests/helpers/torch_free.py: this Python behaves as if torch were not installed."""
import sys


class _NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked by the torch-free test)", name=name)
        return None


sys.meta_path.insert(0, _NoTorch())
'''


def torch_free_env(folder: Path) -> dict[str, str]:
    """os.environ for a subprocess that cannot import torch (see the module docstring)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(BLOCKER)
    env = serve_env()
    env["PYTHONPATH"] = os.pathsep.join([str(folder), env["PYTHONPATH"]])
    return env
