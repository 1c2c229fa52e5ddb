"""Fuzzing the checkpoint loader: a damaged checkpoint loads or raises CheckpointError, and never runs code.

Inputs: a real checkpoint of an untrained tiny ``ae_ssim`` (written by ``save_checkpoint``) with
bytes flipped in its header or its tensor data, cut at any length, or re-written with tampered
metadata; and damaged or malicious ``trainer_state.pt`` files. Allowed: success or CheckpointError.
Bugs known in engine/checkpoint.py (tests/helpers/known_bugs.py, each with its own ``xfail`` test
below) are recorded as such instead of failing the general tests.
"""

from __future__ import annotations

import json
import os
import pickle
import struct
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from defectscope.config import load_config
from defectscope.engine import load_checkpoint, save_checkpoint
from defectscope.engine.checkpoint import TRAINER_STATE, WEIGHTS, CheckpointError, load_trainer_state
from defectscope.models import create_model
from helpers.calibration import threshold_at
from helpers.fuzzlog import Outcome
from helpers.known_bugs import checkpoint_bug

pytestmark = pytest.mark.fuzz

@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real checkpoint folder, its weights file's bytes and the size of its header."""
    cfg = load_config(None, ["--model.name", "ae_ssim", "--model.base_channels", "4", "--model.latent_dim", "8",
                             "--data.image_size", "32"])
    torch.manual_seed(0)
    model = create_model("ae_ssim", cfg.model, 32, 2)
    folder = tmp_path_factory.mktemp("checkpoint") / "final"
    trainer_state = {"step": 7, "epoch": 1, "phase_index": 0, "torch_rng": torch.get_rng_state()}
    save_checkpoint(folder, model, cfg, ["a", "b"], threshold_at(0.5), step=7, trainer_state=trainer_state)
    data = (folder / WEIGHTS).read_bytes()
    header = 8 + struct.unpack("<Q", data[:8])[0]  # safetensors: u64 length, JSON header, then tensor bytes
    with safe_open(str(folder / WEIGHTS), framework="pt") as f:
        metadata = f.metadata()
    return {"folder": folder, "data": data, "header": header, "metadata": metadata,
            "state": (folder / TRAINER_STATE).read_bytes(), "tensors": load_file(str(folder / WEIGHTS))}


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("damaged")


def try_load(kind: str, data: bytes, workdir: Path) -> Any:
    path = workdir / WEIGHTS
    path.write_bytes(data)
    with Outcome("load_checkpoint", kind, (CheckpointError,), names=path, known=checkpoint_bug):
        return load_checkpoint(path)
    return None


def flip(data: bytes, positions: list[int], masks: list[int]) -> bytes:
    out = bytearray(data)
    for position, mask in zip(positions, masks, strict=False):
        out[position % len(out)] ^= mask
    return bytes(out)


flips = st.lists(st.integers(0, 2**31), min_size=1, max_size=8)
masks = st.lists(st.integers(1, 255), min_size=8, max_size=8)


# --------------------------------------------------------------------------- properties


@given(positions=flips, bits=masks)
def test_flipped_header_bytes(original: dict[str, Any], workdir: Path, positions: list[int], bits: list[int]) -> None:
    header = original["header"]
    try_load("flipped header bytes", flip(original["data"][:header], positions, bits) + original["data"][header:],
             workdir)


@given(positions=flips, bits=masks)
def test_flipped_tensor_bytes(original: dict[str, Any], workdir: Path, positions: list[int], bits: list[int]) -> None:
    """No crash and no other error; that corrupted weights load silently is the xfail test below."""
    header = original["header"]
    try_load("flipped tensor bytes", original["data"][:header] + flip(original["data"][header:], positions, bits),
             workdir)


@given(fraction=st.floats(0.0, 1.0, exclude_max=True))
def test_truncated_anywhere(original: dict[str, Any], workdir: Path, fraction: float) -> None:
    data = original["data"]
    checkpoint = try_load("truncated", data[: int(fraction * len(data))], workdir)
    assert checkpoint is None, "a truncated checkpoint loaded"


metadata_values = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", "null", "[]", "{}", "[1, 2]", '{"a": "b"}', "7", "-1", "1e9", "seven", "[", "model: vq_e",
                     "model: {name: nope}", "data: {image_size: 0}", "defectscope-checkpoint/0"]),
)


@given(edits=st.dictionaries(
    st.sampled_from(["format", "config", "class_names", "calibration", "step", "extra"]),
    st.one_of(st.none(), metadata_values),  # None: the entry is removed
    min_size=1, max_size=3,
))
def test_tampered_metadata(original: dict[str, Any], workdir: Path, edits: dict[str, str | None]) -> None:
    metadata = dict(original["metadata"])
    for key, value in edits.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    path = workdir / "tampered.safetensors"
    save_file(original["tensors"], str(path), metadata=metadata)
    try_load("tampered metadata", path.read_bytes(), workdir)


@given(fraction=st.floats(0.0, 1.0, exclude_max=True), positions=flips, bits=masks, cut=st.booleans())
def test_damaged_trainer_state(original: dict[str, Any], workdir: Path, fraction: float, positions: list[int],
                               bits: list[int], cut: bool) -> None:
    data = original["state"]
    data = data[: int(fraction * len(data))] if cut else flip(data, positions, bits)
    folder = workdir / "resume"
    folder.mkdir(exist_ok=True)
    (folder / TRAINER_STATE).write_bytes(data)
    with Outcome("load_trainer_state", "truncated" if cut else "flipped bytes", (CheckpointError,), names=folder,
                 known=checkpoint_bug):
        load_trainer_state(folder)


# --------------------------------------------------------------------------- nothing is unpickled


class Payload:
    """Pickles as a call to os.mkdir: loading it with plain pickle would create ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("container", ["torch.save", "raw pickle"])
def test_a_malicious_trainer_state_is_refused_not_run(tmp_path: Path, original: dict[str, Any], container: str) -> None:
    marker = tmp_path / "pwned"
    folder = tmp_path / "final"
    folder.mkdir()
    state = {"step": 7, "evil": Payload(marker)}
    if container == "torch.save":
        torch.save(state, folder / TRAINER_STATE)
    else:
        (folder / TRAINER_STATE).write_bytes(pickle.dumps(state))
    with pytest.raises(Exception):  # noqa: B017 - which type is the business of an xfail test below
        load_trainer_state(folder)
    assert not marker.exists(), "the pickled call ran"
    # the weights next to it load without touching the trainer state
    (folder / WEIGHTS).write_bytes(original["data"])
    assert load_checkpoint(folder).step == 7
    assert not marker.exists()


def test_payload_really_runs_under_plain_pickle(tmp_path: Path) -> None:
    """Proves the test above could fail: without weights_only the payload executes."""
    marker = tmp_path / "pwned"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.is_dir()


def test_no_unrestricted_unpickling_in_the_library() -> None:
    """Every torch.load call passes weights_only=True; nothing calls pickle / yaml.load / np.load(allow_pickle)."""
    import ast

    src = Path(__file__).resolve().parents[2] / "src" / "defectscope"
    offenders = []
    for file in src.rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
            unsafe = (name == "torch.load" and keywords.get("weights_only") != "True") or name in (
                "pickle.load", "pickle.loads", "yaml.load") or keywords.get("allow_pickle") == "True"
            if unsafe:
                offenders.append(f"{file.relative_to(src)}:{node.lineno}: {ast.unparse(node)}")
    assert offenders == []


# --------------------------------------------------------------------------- known bugs in engine/


def tamper(original: dict[str, Any], tmp_path: Path, **changes: str) -> Path:
    metadata = {**original["metadata"], **changes}
    path = tmp_path / WEIGHTS
    save_file(original["tensors"], str(path), metadata=metadata)
    return path


def test_flipped_tensor_bytes_are_refused(original: dict[str, Any], tmp_path: Path) -> None:
    header = original["header"]
    data = original["data"][:header] + flip(original["data"][header:], [100, 2000], [0x40, 0x01])
    (tmp_path / WEIGHTS).write_bytes(data)
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_checkpoint(tmp_path)


@pytest.mark.parametrize(
    "changes", [{"step": "seven"}, {"step": "7.5"}, {"class_names": "["}, {"class_names": "3"}, {"calibration": "{"}]
)
def test_bad_metadata_values_are_checkpoint_errors(original: dict[str, Any], tmp_path: Path, changes: dict) -> None:
    path = tamper(original, tmp_path, **changes)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


def test_missing_config_is_a_checkpoint_error(original: dict[str, Any], tmp_path: Path) -> None:
    metadata = {k: v for k, v in original["metadata"].items() if k != "config"}
    path = tmp_path / WEIGHTS
    save_file(original["tensors"], str(path), metadata=metadata)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


@pytest.mark.parametrize("config", ["model: vq_e", "[", "data: {image_size: big}"])
def test_damaged_stored_config_is_a_checkpoint_error(original: dict[str, Any], tmp_path: Path, config: str) -> None:
    path = tamper(original, tmp_path, config=config)
    with pytest.raises(CheckpointError, match=str(path)):
        load_checkpoint(path)


@pytest.mark.parametrize("content", [b"", b"not a pickle", b"PK\x03\x04broken zip"])
def test_damaged_trainer_state_is_a_checkpoint_error(tmp_path: Path, content: bytes) -> None:
    (tmp_path / TRAINER_STATE).write_bytes(content)
    with pytest.raises(CheckpointError, match=str(tmp_path)):
        load_trainer_state(tmp_path)


def test_metadata_round_trip_is_json(original: dict[str, Any]) -> None:
    """The fixture is what save_checkpoint writes (so the tampering tests start from a real file)."""
    assert json.loads(original["metadata"]["class_names"]) == ["a", "b"]
    assert load_checkpoint(original["folder"]).step == 7
