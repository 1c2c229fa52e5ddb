"""Damaged and edited checkpoints are refused with a CheckpointError naming the file, never loaded.

Each case starts from a real checkpoint written by save_checkpoint (an untrained tiny ae_ssim,
whose bottleneck's shape depends on image_size) and damages one thing.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import time
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from defectscope.config import load_config
from defectscope.engine.checkpoint import (
    METADATA_DIGEST,
    STATE_DIGEST,
    TENSORS_DIGEST,
    TRAINER_STATE,
    WEIGHTS,
    CheckpointError,
    load_checkpoint,
    load_trainer_state,
    metadata_digest,
    save_checkpoint,
    tensors_digest,
)
from defectscope.engine.fit import rng_state
from defectscope.models import create_model
from helpers.calibration import threshold_at

CALIBRATION = threshold_at(0.5).to_json()


def trainer_state() -> dict[str, Any]:
    return {"phase_index": 0, "step": 7, "epoch": 2, "batch": 1, "steps_before": 0, "seconds": 1.5,
            "optimizers": {"main": {"state": {}, "param_groups": []}}, "rng": rng_state()}


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    cfg = load_config(None, ["--model.name", "ae_ssim", "--model.base_channels", "4", "--model.latent_dim", "8",
                             "--data.image_size", "32"])
    torch.manual_seed(0)
    model = create_model("ae_ssim", cfg.model, 32, 2)
    return save_checkpoint(tmp_path / "last", model, cfg, ["a", "b"], threshold_at(0.5), step=7,
                           trainer_state=trainer_state())


def metadata_of(folder: Path) -> dict[str, str]:
    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        return dict(f.metadata())


def rewrite(folder: Path, tensors: dict[str, torch.Tensor] | None = None, resign: bool = True,
            **changes: str | None) -> None:
    """Write the weights file again with some tensors or metadata entries changed (None: removed).

    `resign`: recompute the metadata digest, as a deliberate forger would; the value checks
    must catch what the digest then cannot.
    """
    metadata = metadata_of(folder)
    for key, value in changes.items():
        if value is None:
            metadata.pop(key)
        else:
            metadata[key] = value
    if resign and METADATA_DIGEST in metadata:
        metadata[METADATA_DIGEST] = metadata_digest(metadata)
    save_file(tensors if tensors is not None else load_file(str(folder / WEIGHTS)), str(folder / WEIGHTS),
              metadata=metadata)


def refused(folder: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as err:
        load_checkpoint(folder)
    assert str(folder) in str(err.value)


def test_the_undamaged_checkpoint_loads(checkpoint):
    loaded = load_checkpoint(checkpoint)
    assert loaded.step == 7 and loaded.class_names == ["a", "b"]
    assert load_trainer_state(checkpoint)["batch"] == 1


@pytest.mark.parametrize("where", [0.0, 0.5, 0.999])
def test_a_flipped_bit_in_the_tensor_data_is_refused(checkpoint, where):
    data = bytearray((checkpoint / WEIGHTS).read_bytes())
    header = 8 + struct.unpack("<Q", data[:8])[0]  # safetensors: u64 header length, JSON header, tensor bytes
    data[header + int(where * (len(data) - header - 1))] ^= 0x01
    (checkpoint / WEIGHTS).write_bytes(bytes(data))
    refused(checkpoint, "tensor data does not match its digest — the file is damaged")


def test_a_tensor_swapped_for_one_of_the_same_shape_is_refused(checkpoint):
    tensors = load_file(str(checkpoint / WEIGHTS))
    name = next(k for k, v in tensors.items() if v.is_floating_point() and v.numel() > 1)
    tensors[name] = tensors[name].flip(0)
    rewrite(checkpoint, tensors)
    refused(checkpoint, "does not match its digest")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_even_with_a_matching_digest(checkpoint, bad):
    tensors = load_file(str(checkpoint / WEIGHTS))
    name = next(k for k, v in tensors.items() if v.is_floating_point())
    tensors[name] = torch.full_like(tensors[name], bad)
    rewrite(checkpoint, tensors, **{TENSORS_DIGEST: tensors_digest(tensors)})
    refused(checkpoint, f"non-finite weights .* in {name}")


def test_an_image_size_that_does_not_fit_the_weights_is_refused(checkpoint):
    raw = yaml.safe_load(metadata_of(checkpoint)["config"])
    raw["data"]["image_size"] = 64
    rewrite(checkpoint, config=yaml.safe_dump(raw))
    refused(checkpoint, r"data.image_size 64.*shapes differ \(.*: \(.*\) stored, \(.*\) in the model")


@pytest.mark.parametrize(("key", "value", "match"), [
    ("class_names", "[", "'class_names' is not valid JSON"),
    ("class_names", "3", "'class_names' must be a JSON list of names"),
    ("class_names", '["a", 1]', "'class_names' must be a JSON list of names"),
    ("step", "seven", "'step' must be a non-negative integer"),
    ("step", "7.5", "'step' must be a non-negative integer"),
    ("step", "-1", "'step' must be a non-negative integer"),
    ("calibration", "{", "'calibration' is not valid JSON"),
    ("calibration", '{"image_threshold": 0.5}', r"'calibration': unknown keys \['image_threshold'\]"),
    ("calibration", CALIBRATION.replace("0.5", "NaN", 1), r"image.threshold.value must be a finite number"),
    ("calibration", CALIBRATION.replace('"n": 2', '"n": "2"'), r"image.threshold.n must be a positive integer"),
    ("calibration", "[0.5]", "'calibration' must be a JSON object"),
    ("config", "[", "stored config cannot be read"),
    ("config", "model: vq_e", "stored config cannot be read"),
    ("config", "model: {name: nope}", "stored config cannot be read"),
    ("config", "data: {image_size: big}", "stored config cannot be read"),
    ("config", "a: &a [*a]", "stored config cannot be read"),
    ("config", None, "lacks config"),
    ("class_names", None, "lacks class_names"),
    (TENSORS_DIGEST, None, f"lacks {TENSORS_DIGEST}"),
    (METADATA_DIGEST, None, f"lacks {METADATA_DIGEST}"),
    ("format", None, "not a defectscope checkpoint"),
    ("format", "defectscope-checkpoint/1", "written by another version"),
])
def test_edited_metadata_is_refused(checkpoint, key, value, match):
    rewrite(checkpoint, **{key: value})
    refused(checkpoint, match)


def test_a_billion_laughs_in_the_stored_config_is_refused_in_well_under_a_second(checkpoint):
    """Nine levels of nine aliases, 400 bytes: signed by a forger, so only the YAML measure stops it."""
    names = "abcdefghi"
    text = f"a: &a [{', '.join(['x'] * 9)}]\n" + "".join(
        f"{n}: &{n} [{', '.join([f'*{p}'] * 9)}]\n" for p, n in zip(names, names[1:], strict=False))
    rewrite(checkpoint, config=text)
    started = time.perf_counter()
    refused(checkpoint, r"stored config cannot be read \(.*\(stored config\): refused: .*billion laughs")
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("key", "value"), [("calibration", CALIBRATION.replace("0.5", "0.7")),
                                            ("class_names", '["a", "c"]'), ("step", "8"), ("extra", "x")])
def test_a_valid_looking_edit_is_refused_by_the_metadata_digest(checkpoint, key, value):
    """A flipped digit in a threshold or a letter in a class name still parses; the digest sees it."""
    rewrite(checkpoint, resign=False, **{key: value})
    refused(checkpoint, "metadata does not match its digest")
    with pytest.raises(CheckpointError, match="metadata does not match its digest"):
        load_trainer_state(checkpoint)


@pytest.mark.parametrize("cut", [0, 100, 0.5, -1])
def test_a_truncated_weights_file_is_refused(checkpoint, cut):
    data = (checkpoint / WEIGHTS).read_bytes()
    (checkpoint / WEIGHTS).write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    refused(checkpoint, "not a readable safetensors file|cannot read weights")


# --------------------------------------------------------------------------- trainer state


def refused_state(folder: Path, match: str) -> None:
    with pytest.raises(CheckpointError, match=match) as err:
        load_trainer_state(folder)
    assert str(folder) in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty"])
def test_a_damaged_trainer_state_is_refused_before_it_is_unpickled(checkpoint, damage, monkeypatch):
    path = checkpoint / TRAINER_STATE
    data = bytearray(path.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "flipped":
        data[len(data) // 2] ^= 0x10
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("unpickled a file that fails its digest"))
    refused_state(checkpoint, "does not match the digest stored with the weights")


@pytest.mark.parametrize("content", [b"", b"not a pickle", b"PK\x03\x04broken zip"])
def test_an_unreadable_trainer_state_with_a_matching_digest_is_refused(checkpoint, content):
    (checkpoint / TRAINER_STATE).write_bytes(content)
    rewrite(checkpoint, **{STATE_DIGEST: hashlib.sha256(content).hexdigest()})
    refused_state(checkpoint, "not a readable trainer state")


class Payload:
    """Pickles as a call to os.mkdir: unpickled without weights_only, it creates `marker`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("container", ["torch.save", "pickle"])
def test_a_pickled_call_is_never_run_even_with_a_matching_digest(checkpoint, tmp_path, container):
    marker = tmp_path / "ran"
    state = {**trainer_state(), "evil": Payload(marker)}
    path = checkpoint / TRAINER_STATE
    torch.save(state, path) if container == "torch.save" else path.write_bytes(pickle.dumps(state))
    rewrite(checkpoint, **{STATE_DIGEST: hashlib.sha256(path.read_bytes()).hexdigest()})
    refused_state(checkpoint, "not a readable trainer state")
    assert not marker.exists()
    pickle.loads(pickle.dumps(Payload(marker)))  # the payload is real: plain pickle runs it
    assert marker.is_dir()


@pytest.mark.parametrize(("change", "match"), [
    ({"step": "7"}, "step missing or of the wrong type"),
    ({"batch": -1}, "batch missing or of the wrong type"),
    ({"seconds": float("nan")}, "seconds missing"),
    ({"optimizers": [1]}, "optimizers missing"),
    ({"rng": {}}, "rng missing"),
])
def test_a_trainer_state_of_the_wrong_shape_is_refused(checkpoint, change, match):
    path = checkpoint / TRAINER_STATE
    torch.save({**trainer_state(), **change}, path)
    rewrite(checkpoint, **{STATE_DIGEST: hashlib.sha256(path.read_bytes()).hexdigest()})
    refused_state(checkpoint, match)


def test_a_final_checkpoint_has_no_trainer_state_to_resume_from(checkpoint):
    (checkpoint / TRAINER_STATE).unlink()
    refused_state(checkpoint, "no trainer state to resume from")


# --------------------------------------------------------------------------- interrupted saves


def test_a_save_killed_between_its_renames_leaves_the_previous_checkpoint_usable(checkpoint):
    """The swap renames last → .last.old, then the new folder → last; a kill between leaves no `last`."""
    old = checkpoint.with_name(".last.old")
    os.replace(checkpoint, old)
    (checkpoint.parent / ".last.abc123.tmp").mkdir()  # a half-written new checkpoint
    assert load_checkpoint(checkpoint).step == 7  # read from .last.old
    assert load_trainer_state(checkpoint)["step"] == 7
    cfg = load_checkpoint(checkpoint).config
    save_checkpoint(checkpoint, create_model("ae_ssim", cfg.model, 32, 2), cfg, ["a", "b"], step=8)
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["last"]
    assert load_checkpoint(checkpoint).step == 8


def test_metadata_stays_json(checkpoint):
    meta = metadata_of(checkpoint)
    assert json.loads(meta["class_names"]) == ["a", "b"] and len(meta[TENSORS_DIGEST]) == 64
