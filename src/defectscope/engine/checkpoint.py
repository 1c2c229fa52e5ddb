"""Checkpoints: weights as safetensors with the resolved config inside, written atomically.

A checkpoint is a folder: `model.safetensors` (weights + metadata: config YAML, class names,
calibration; the map standardiser's statistics, when used, as tensors beside the weights) is
all `test` and `predict` need; `trainer_state.pt` (optimisers, step, RNG) is only for resuming.
The folder is written under a temporary name and renamed into place, so an interruption never
leaves a half-written checkpoint where a good one was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from defectscope.config import RunConfig, config_from_yaml, config_to_yaml
from defectscope.engine.standardize import MapStandardizer
from defectscope.layers.backbones import FrozenBackbone
from defectscope.models import AnomalyModel, create_model
from defectscope.models.base import ModelOutput

FORMAT = "defectscope-checkpoint/2"  # 2: nested backbone and choice configs, StepContext-era models
WEIGHTS = "model.safetensors"
TRAINER_STATE = "trainer_state.pt"


class CheckpointError(ValueError):
    """A checkpoint is missing, truncated or not ours; the message names the path."""


@dataclass
class Checkpoint:
    model: AnomalyModel
    config: RunConfig
    class_names: list[str]
    calibration: dict[str, float] = field(default_factory=dict)
    path: Path | None = None
    step: int = 0
    standardizer: MapStandardizer | None = None  # eval.map_standardization: position

    def predict(self, images: torch.Tensor, class_ids: torch.Tensor | None = None) -> ModelOutput:
        """Score images as the run was evaluated: the model, then the standardiser if it has one."""
        out = self.model.predict(images, class_ids)
        return out if self.standardizer is None else self.standardizer(out, class_ids)


def save_checkpoint(
    directory: str | Path,
    model: AnomalyModel,
    config: RunConfig,
    class_names: list[str],
    calibration: dict[str, float] | None = None,
    step: int = 0,
    trainer_state: dict[str, Any] | None = None,
    standardizer: MapStandardizer | None = None,
) -> Path:
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if standardizer is not None:
            tensors.update(standardizer.tensors())
        metadata = {
            "format": FORMAT,
            "config": config_to_yaml(config),
            "class_names": json.dumps(class_names),
            "calibration": json.dumps(calibration or {}),
            "step": str(step),
        }
        save_file(tensors, str(tmp / WEIGHTS), metadata=metadata)
        (tmp / "config.yaml").write_text(metadata["config"])
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
        _share_like_umask(tmp)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def _share_like_umask(folder: Path) -> None:
    """mkdtemp makes a private folder; give it (and its files) the permissions of a plain mkdir."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def _replace_dir(new: Path, target: Path) -> None:
    """Swap `new` into `target`; the old checkpoint is removed only after the swap."""
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _weights_path(path: Path) -> Path:
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found (expected a run's checkpoint folder or {WEIGHTS})")
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    weights = _weights_path(Path(path))
    try:
        with safe_open(str(weights), framework="pt") as f:
            metadata = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from err
    found = metadata.get("format")
    if isinstance(found, str) and found.startswith("defectscope-checkpoint/") and found != FORMAT:
        raise CheckpointError(
            f"{weights}: written by another version of defectscope (format {found!r}; this version reads "
            f"{FORMAT!r}); train the model again with this version, or load it with the version that wrote it"
        )
    if found != FORMAT:
        raise CheckpointError(f"{weights}: not a defectscope checkpoint (format {found!r})")
    return metadata


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` into `model`; raises ValueError naming the keys that do not fit.

    Keys may be missing only under a pretrained frozen backbone that has not been loaded: it
    reads its weights from its own local file when first used (a scoring option on weights
    trained without that backbone, e.g. PVQAE's `target.rec_distance: perceptual`).
    """
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shapes that differ
        raise ValueError(str(err)) from err
    own_file = tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, FrozenBackbone) and not m.loaded)
    missing = [k for k in missing if not k.startswith(own_file)]
    if missing or unexpected:
        raise ValueError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Rebuild the model from the config stored in the checkpoint and load its weights."""
    weights = _weights_path(Path(path))
    metadata = read_metadata(weights)
    config = config_from_yaml(metadata["config"], f"{weights} (stored config)")
    class_names = json.loads(metadata.get("class_names", "[]"))
    try:
        model = create_model(config.model_name, config.model, config.data.image_size, max(1, len(class_names)))
    except ValueError as err:
        raise CheckpointError(f"{weights}: its config does not build model '{config.model_name}' ({err})") from err
    try:
        state = load_file(str(weights), device=map_location)
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: cannot read weights ({err})") from err
    standardizer = MapStandardizer.pop_from(state)
    try:
        load_weights(model, state)
    except ValueError as err:
        raise CheckpointError(f"{weights}: weights do not fit model '{config.model_name}' ({err})") from err
    return Checkpoint(
        model=model.eval(),  # loaded for scoring; training builds its own model and loads weights into it
        config=config,
        class_names=class_names,
        calibration=json.loads(metadata.get("calibration", "{}")),
        path=weights.parent,
        step=int(metadata.get("step", 0)),
        standardizer=standardizer,
    )


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    state_path = Path(path) / TRAINER_STATE
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: no trainer state to resume from (was this a final checkpoint?)")
    return torch.load(state_path, map_location="cpu", weights_only=True)
