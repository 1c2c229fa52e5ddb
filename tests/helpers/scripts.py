"""Load a measuring script from scripts/ as a module, so tests call its functions (scripts/ is no package)."""

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]


def load_script(name: str) -> ModuleType:
    if str(REPO / "scripts") not in sys.path:  # as when run: a script imports its siblings (side_by_side, _server)
        sys.path.append(str(REPO / "scripts"))
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
