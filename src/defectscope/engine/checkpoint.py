"""Checkpoints: weights as safetensors with the resolved config inside, written atomically.

A checkpoint is a folder: `model.safetensors` (weights + metadata: config YAML, class names,
calibration, a sha256 of the tensors and of the trainer state; the map standardiser's
statistics, when used, as tensors beside the weights) is all `test` and `predict` need;
`trainer_state.pt` (optimisers, position in the data, RNG states) is only for resuming.
The folder is written under a temporary name and renamed into place, so an interruption never
leaves a half-written checkpoint where a good one was; a load checks every byte against the
stored digests and every value it reads from the metadata, so a damaged file is refused with
the file named instead of loading silently or failing with a traceback.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from defectscope.config import RunConfig, config_from_yaml, config_to_yaml
from defectscope.engine.standardize import pop_standardizer, standardizer_tensors
from defectscope.errors import UserError
from defectscope.layers.backbones import FrozenBackbone
from defectscope.models import AnomalyModel, create_model
from defectscope.scoring.calibration import Calibration, CalibrationError
from defectscope.scoring.path import MapStandardizer

FORMAT = "defectscope-checkpoint/2"  # 2: nested backbone and choice configs, StepContext-era models
WEIGHTS = "model.safetensors"
RUN_CHECKPOINT = Path("checkpoints") / "final"  # where a run folder keeps the checkpoint that scores
TRAINER_STATE = "trainer_state.pt"
TENSORS_DIGEST = "tensors_sha256"  # metadata key: sha256 of every tensor's name, dtype, shape and bytes
STATE_DIGEST = "trainer_state_sha256"  # metadata key: sha256 of trainer_state.pt's bytes
METADATA_DIGEST = "metadata_sha256"  # metadata key: sha256 of every other metadata entry
REQUIRED_METADATA = ("format", "config", "class_names", "calibration", "step", TENSORS_DIGEST, METADATA_DIGEST)


class CheckpointError(UserError):
    """A checkpoint is missing, truncated or not ours; the message names the path."""


@dataclass
class Checkpoint:
    model: AnomalyModel
    config: RunConfig
    class_names: list[str]
    calibration: Calibration | None = None  # None: saved before calibration (during training)
    path: Path | None = None
    step: int = 0
    standardizer: MapStandardizer | None = None  # eval.map_standardization: position


def save_checkpoint(
    directory: str | Path,
    model: AnomalyModel,
    config: RunConfig,
    class_names: list[str],
    calibration: Calibration | None = None,
    step: int = 0,
    trainer_state: dict[str, Any] | None = None,
    standardizer: MapStandardizer | None = None,
) -> Path:
    """Write the checkpoint folder atomically: a reader sees the old one or the new one, never half."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    recover_interrupted_save(directory)
    tmp = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", suffix=".tmp", dir=directory.parent))
    try:
        tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        if standardizer is not None:
            tensors.update(standardizer_tensors(standardizer))
        metadata = {
            "format": FORMAT,
            "config": config_to_yaml(config),
            "class_names": json.dumps(class_names),
            "calibration": "{}" if calibration is None else calibration.to_json(),
            "step": str(step),
            TENSORS_DIGEST: tensors_digest(tensors),
        }
        if trainer_state is not None:
            torch.save(trainer_state, tmp / TRAINER_STATE)
            metadata[STATE_DIGEST] = _file_digest(tmp / TRAINER_STATE)
        metadata[METADATA_DIGEST] = metadata_digest(metadata)
        save_file(tensors, str(tmp / WEIGHTS), metadata=metadata)
        (tmp / "config.yaml").write_text(metadata["config"])
        _share_like_umask(tmp)
        _sync(tmp)
        _replace_dir(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory


def tensors_digest(tensors: Mapping[str, torch.Tensor]) -> str:
    """sha256 of every tensor's name, dtype, shape and raw bytes, in name order: any flipped bit changes it."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(json.dumps([name, str(tensor.dtype), list(tensor.shape)]).encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the bytes as stored, for any dtype
    return digest.hexdigest()


def metadata_digest(metadata: Mapping[str, str]) -> str:
    """sha256 of the metadata entries but this digest: a changed threshold digit or class name shows."""
    entries = {k: v for k, v in metadata.items() if k != METADATA_DIGEST}
    return hashlib.sha256(json.dumps(entries, sort_keys=True).encode()).hexdigest()


def _check_metadata(weights: Path, metadata: dict[str, str]) -> None:
    if metadata_digest(metadata) != metadata[METADATA_DIGEST]:
        raise CheckpointError(f"{weights}: metadata does not match its digest — the file was damaged or edited")


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _share_like_umask(folder: Path) -> None:
    """mkdtemp makes a private folder; give it (and its files) the permissions of a plain mkdir."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for file in folder.iterdir():
        file.chmod(0o666 & ~umask)


def _sync(folder: Path) -> None:
    """Flush the files to disk before the rename publishes them, so a power cut cannot publish empty files."""
    for file in folder.iterdir():
        with file.open("rb") as f:
            os.fsync(f.fileno())


def _old(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


def recover_interrupted_save(target: Path) -> None:
    """Undo what a save killed part-way left behind: temporary folders, and a swap cut in half.

    The swap renames `target` to `.target.old`, then the new folder to `target`; a process
    killed between the two leaves no `target` but a complete `.target.old`, which is put back.
    """
    old = _old(target)
    if not target.exists() and (old / WEIGHTS).is_file():
        os.replace(old, target)
    for leftover in target.parent.glob(f".{target.name}.*"):
        if leftover.is_dir() and (leftover == old or leftover.name.endswith(".tmp")):
            shutil.rmtree(leftover, ignore_errors=True)


def _replace_dir(new: Path, target: Path) -> None:
    """Swap `new` into `target`; the old checkpoint is removed only after the swap."""
    old = None
    if target.exists():
        old = _old(target)
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _weights_path(path: Path) -> Path:
    asked = path
    if (path / RUN_CHECKPOINT).is_dir() and not (path / WEIGHTS).exists():
        path = path / RUN_CHECKPOINT  # a run folder stands for its final checkpoint
    if not path.exists() and (_old(path) / WEIGHTS).is_file():
        path = _old(path)  # a save was killed mid-swap: the previous checkpoint is complete here
    if path.is_dir():
        path = path / WEIGHTS
    if not path.is_file():
        raise CheckpointError(_incomplete(asked) or
                              f"{path}: checkpoint not found (expected a run's checkpoint folder or {WEIGHTS})")
    return path


def _incomplete(asked: Path) -> str | None:
    """Why a run's checkpoint folder holds nothing to load, when a run was there and never finished.

    A save killed before its rename leaves only a temporary folder; a run stopped before its first
    save (or run with train.checkpoint_every 0) leaves none. Either way nothing can be resumed and the
    run must start again; its config.yaml, written before training, names the same folder.
    """
    folder = asked.parent if asked.name == WEIGHTS else asked
    parent = folder.parent
    if not parent.is_dir():
        return None
    leftovers = sorted(p.name for p in parent.glob(f".{folder.name}.*.tmp") if p.is_dir())
    run = parent.parent if parent.name == RUN_CHECKPOINT.parent.name else None
    started = run is not None and (run / "config.yaml").is_file() and not (run / RUN_CHECKPOINT).exists()
    if not leftovers and not started:
        return None
    config = run / "config.yaml" if run is not None and (run / "config.yaml").is_file() else None
    again = f"defectscope train {config or 'CONFIG'} --overwrite"
    if leftovers:
        cause = f"the run was stopped while it wrote its first one, which it left unfinished in {parent / leftovers[0]}"
    else:
        cause = ("the run stopped before it saved one (or ran with train.checkpoint_every 0, which saves only "
                 "checkpoints/final, at the end)")
    return (f"{folder}: no complete checkpoint — {cause}. There is nothing to resume from: start the run "
            f"again with `{again}` (--overwrite deletes what the stopped run wrote)")


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a checkpoint's weights file, after checking it is ours and of this format."""
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
    absent = [key for key in REQUIRED_METADATA if key not in metadata]
    if absent:
        raise CheckpointError(f"{weights}: its metadata lacks {', '.join(absent)}; the file was edited or damaged")
    return metadata


@dataclass(frozen=True)
class _Contents:
    """The metadata of a weights file, read and checked."""

    config: RunConfig
    class_names: list[str]
    calibration: Calibration | None
    step: int


def _parse_metadata(weights: Path, metadata: dict[str, str]) -> _Contents:
    """Every value the loader uses, checked; a damaged or edited one is a CheckpointError naming the file."""
    try:
        config = config_from_yaml(metadata["config"], f"{weights} (stored config)")
    except (ValueError, TypeError, KeyError, RecursionError, yaml.YAMLError) as err:
        # ConfigError is a ValueError; the others are PyYAML failing on bytes that are not a config
        raise CheckpointError(f"{weights}: its stored config cannot be read ({err})") from err
    class_names = _json_entry(weights, metadata, "class_names")
    if not isinstance(class_names, list) or not all(isinstance(n, str) for n in class_names):
        raise CheckpointError(f"{weights}: metadata 'class_names' must be a JSON list of names, got "
                              f"{metadata['class_names'][:80]!r}")
    try:
        calibration = Calibration.from_json(metadata["calibration"], "metadata 'calibration'")
    except CalibrationError as err:
        raise CheckpointError(f"{weights}: {err}") from err
    if not re.fullmatch(r"[0-9]{1,18}", metadata["step"]):
        raise CheckpointError(f"{weights}: metadata 'step' must be a non-negative integer, got "
                              f"{metadata['step'][:80]!r}")
    return _Contents(config, class_names, calibration, int(metadata["step"]))


def _json_entry(weights: Path, metadata: dict[str, str], key: str) -> Any:
    try:
        return json.loads(metadata[key])
    except (ValueError, RecursionError) as err:
        raise CheckpointError(f"{weights}: metadata {key!r} is not valid JSON ({err})") from err


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _check_tensors(weights: Path, metadata: dict[str, str], state: dict[str, torch.Tensor]) -> None:
    """The bytes are the ones that were saved, and every floating value is finite."""
    if tensors_digest(state) != metadata[TENSORS_DIGEST]:
        raise CheckpointError(f"{weights}: tensor data does not match its digest — the file is damaged")
    bad = [name for name, t in state.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{weights}: non-finite weights (NaN or inf) in {', '.join(bad[:3])}"
                              f"{f' and {len(bad) - 3} more' if len(bad) > 3 else ''}; the training that wrote "
                              "them diverged, and a model with them scores nothing")


# how load_state_dict reports a tensor of another shape
_SIZE_MISMATCH = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\((\[[^\]]*\])\) "
                            r"from checkpoint, the shape in current model is torch\.Size\((\[[^\]]*\])\)")


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Load `state` into `model`; raises ValueError naming the keys that do not fit.

    Keys may be missing only under a pretrained frozen backbone that has not been loaded: it
    reads its weights from its own local file when first used (a scoring option on weights
    trained without that backbone, e.g. PVQAE's `target.rec_distance: perceptual`).
    """
    try:
        # shapes are left to load_state_dict: a model may resize a buffer to what it loads (a memory bank)
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:
        shapes = [f"{name}: {tuple(map(int, re.findall(r'[0-9]+', stored)))} stored, "
                  f"{tuple(map(int, re.findall(r'[0-9]+', own)))} in the model"
                  for name, stored, own in _SIZE_MISMATCH.findall(str(err))]
        if not shapes:
            raise ValueError(str(err)) from err
        raise ValueError(f"shapes differ ({'; '.join(shapes[:3])}{' ...' if len(shapes) > 3 else ''})") from err
    own_file = tuple(f"{name}." for name, m in model.named_modules() if isinstance(m, FrozenBackbone) and not m.loaded)
    missing = [k for k in missing if not k.startswith(own_file)]
    if missing or unexpected:
        raise ValueError(f"missing {missing[:3]}, unexpected {unexpected[:3]}")


def load_checkpoint(path: str | Path, map_location: str = "cpu") -> Checkpoint:
    """Rebuild the model from the config stored in the checkpoint and load its weights."""
    weights = _weights_path(Path(path))
    metadata = read_metadata(weights)
    _check_metadata(weights, metadata)  # first: nothing edited or damaged is parsed (a YAML bomb in the config)
    contents = _parse_metadata(weights, metadata)
    config = contents.config
    try:
        model = create_model(config.model_name, config.model, config.data.model_input_size,
                             max(1, len(contents.class_names)))
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{weights}: its config does not build model '{config.model_name}' ({err})") from err
    try:
        state = load_file(str(weights), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"{weights}: cannot read weights ({err})") from err
    _check_tensors(weights, metadata, state)
    state = {k: v.to(map_location) for k, v in state.items()}
    standardizer = pop_standardizer(state)
    try:
        load_weights(model, state)
    except ValueError as err:
        raise CheckpointError(
            f"{weights}: the weights do not fit model '{config.model_name}' built from the stored config "
            f"(data.image_size {config.data.image_size}): {err}"
        ) from err
    return Checkpoint(
        model=model.eval(),  # loaded for scoring; training builds its own model and loads weights into it
        config=config,
        class_names=contents.class_names,
        calibration=contents.calibration,
        path=weights.parent,
        step=contents.step,
        standardizer=standardizer,
    )


def load_trainer_state(path: str | Path) -> dict[str, Any]:
    """The optimiser and data-position state of a `checkpoints/last` folder, checked against its digest.

    The digest in the weights' metadata is checked before anything is unpickled, and
    `weights_only=True` lets torch rebuild only tensors and plain containers.
    """
    folder = Path(path)
    if not folder.exists() and (_old(folder) / TRAINER_STATE).is_file():
        folder = _old(folder)
    folder = folder.parent if folder.is_file() else folder
    state_path = folder / TRAINER_STATE
    if not state_path.is_file():
        raise CheckpointError(f"{state_path}: no trainer state to resume from (was this a final checkpoint?)")
    metadata = read_metadata(folder)
    _check_metadata(folder / WEIGHTS, metadata)
    expected = metadata.get(STATE_DIGEST)
    if expected is None:
        raise CheckpointError(f"{folder / WEIGHTS}: its metadata has no {STATE_DIGEST}; the trainer state "
                              "beside it cannot be checked")
    if _file_digest(state_path) != expected:
        raise CheckpointError(f"{state_path}: does not match the digest stored with the weights — the file is "
                              "damaged, or comes from another checkpoint")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - torch.load fails on bad bytes with many types; all mean the same
        raise CheckpointError(f"{state_path}: not a readable trainer state ({type(err).__name__}: {err})") from err
    wrong = [key for key, ok in _TRAINER_STATE_KEYS.items() if not (isinstance(state, dict) and ok(state.get(key)))]
    if wrong:
        raise CheckpointError(f"{state_path}: not a trainer state this version can resume from "
                              f"({', '.join(wrong)} missing or of the wrong type)")
    return state


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# what engine.fit writes into trainer_state.pt, and what each entry must be
_TRAINER_STATE_KEYS = {
    "phase_index": _count, "step": _count, "epoch": _count, "batch": _count, "steps_before": _count,
    "seconds": lambda v: isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0,
    "optimizers": lambda v: isinstance(v, dict) and all(isinstance(o, dict) for o in v.values()),
    "rng": lambda v: isinstance(v, dict) and isinstance(v.get("torch"), torch.Tensor),
}
