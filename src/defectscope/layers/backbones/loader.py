"""Reading pretrained backbone weights from a local file: checked, never downloaded.

defectscope does not fetch weights. A backbone that needs them reads a file the user names
(`model.backbone_path`), checks its sha256 against the published sum unless told otherwise,
and loads it without executing pickled code (`weights_only=True`, or safetensors).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

# sha256 of the files as published (../shared/weights/README.md lists the same sums)
PUBLISHED_SHA256 = {
    "mobilenet_v2": "e086183ea39b3b31da79c1a7c1f81088d416212c4219310828a52ef1f896395c",
    "resnet18": "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec",
    "wide_resnet50_2": "95faca4d11227dddf8633dbb5ff6c8a9003c1aa5b8945c73834b8007b10950b8",
}
PUBLISHED_NAMES = {
    "mobilenet_v2": "mobilenetv2_imagenet_features.safetensors (../shared/weights/ beside the repository)",
    "resnet18": "torchvision's resnet18-f37072fd.pth",
    "wide_resnet50_2": "torchvision's wide_resnet50_2-95faca4d.pth",
}


class BackboneWeightsError(ValueError):
    """Pretrained weights are missing, not the expected file, or do not fit; names the path."""


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def expected_sha256(backbone: str, setting: str) -> str:
    """"published" → the published sum of `backbone`; "" → no check; else the given sum."""
    if setting == "published":
        return PUBLISHED_SHA256[backbone]
    return setting.lower()


def read_state_dict(path: str | Path, backbone: str, sha256: str = "published",
                    setting: str = "model.backbone_path") -> dict[str, Tensor]:
    """The tensors in `path` (.safetensors, or a torch file read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise BackboneWeightsError(
            f"{path}: pretrained weights for backbone '{backbone}' not found. defectscope never "
            f"downloads weights: put {PUBLISHED_NAMES[backbone]} at this path, or set "
            f"{setting} to where the file is."
        )
    want = expected_sha256(backbone, sha256)
    if want:
        got = sha256_of(path)
        if got != want:
            raise BackboneWeightsError(
                f"{path}: sha256 {got} is not the expected {want} for backbone '{backbone}' "
                f"({PUBLISHED_NAMES[backbone]}). If you converted the file on purpose (e.g. to "
                f"safetensors), set {setting.removesuffix('_path')}_sha256 to its sum, or to '' to skip the check."
            )
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refusals, truncated files, foreign formats
        raise BackboneWeightsError(f"{path}: cannot read backbone weights ({err})") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise BackboneWeightsError(f"{path}: not a state dict of tensors")
    return state


def load_into(module: torch.nn.Module, state: dict[str, Tensor], path: str | Path, backbone: str) -> None:
    """Load the keys `module` has; keys it lacks (a classifier, later stages) are ignored.

    Every key of `module` must be in the file with the same shape, or the error names them.
    """
    own = module.state_dict()
    missing = [k for k in own if k not in state]
    wrong = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in own.items()
             if k in state and state[k].shape != v.shape]
    if missing or wrong:
        raise BackboneWeightsError(
            f"{path}: does not fit backbone '{backbone}' (missing {missing[:3]}"
            f"{'…' if len(missing) > 3 else ''}, wrong shapes {wrong[:3]})"
        )
    module.load_state_dict({k: state[k] for k in own})
