"""Damage copies of a checkpoint in several ways and count how the loaders take each: refused, loaded, crashed.

Used for the "Damaged checkpoints" section of docs/reliability.md:

    python scripts/damage_checkpoints.py runs/x/checkpoints/last [--copies 200] [--seed 0] [--json out.json]

CHECKPOINT is a checkpoint folder: `checkpoints/last` (weights and trainer state) or
`checkpoints/final` (weights only; the trainer-state kinds are then left out). Each copy gets
one kind of damage; the weights are then loaded with `load_checkpoint`, and, where there is a
trainer state, with `load_trainer_state` too (alone for damage to the trainer state). An
outcome is "refused" (CheckpointError), "loaded" (no error: the damage went unseen), or
"crashed: <type>" (any other exception, i.e. a traceback for the user).

Kinds: flipped bytes in the tensor data; flipped bytes in the header (JSON with the metadata);
the weights cut at a random length; a metadata entry edited (valid-looking or malformed
values); a malformed entry written with the metadata digest recomputed, as someone editing on
purpose would; one weight set to NaN or inf with both digests recomputed; flipped bytes in
trainer_state.pt; trainer_state.pt cut short.

For comparison, the same script runs against an older loader that has no digests (the kinds
that recompute them are then left out), e.g. the tree before them:

    git archive eb13d19 src | tar -x -C /tmp/before
    PYTHONPATH=/tmp/before/src python scripts/damage_checkpoints.py runs/x/checkpoints/last
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import load_file, save_file

from defectscope.engine.checkpoint import TRAINER_STATE, WEIGHTS, CheckpointError, load_checkpoint, load_trainer_state

try:  # digests (checkpoints written since commit b5b234c)
    from defectscope.engine.checkpoint import METADATA_DIGEST, TENSORS_DIGEST, metadata_digest, tensors_digest
except ImportError:  # an older loader, run for comparison: the kinds that recompute digests are left out
    METADATA_DIGEST = TENSORS_DIGEST = ""

EDITS = {  # metadata entry → values to write there: some look valid, some are malformed
    "class_names": ['["x"]', '["a", "b", "c"]', "[", "3", '["a", 1]', "null"],
    "calibration": ['{"image_threshold": 0.7}', "{}", "{", '{"image_threshold": "0.5"}', '{"image_threshold": NaN}'],
    "step": ["8", "0", "seven", "7.5", "-1", ""],
    "config": ["", "[", "model: vq_e", "model: {name: nope}", "data: {image_size: 64}", "data: {image_size: big}"],
    "format": ["defectscope-checkpoint/1", "", "other"],
}
if METADATA_DIGEST:
    EDITS.update({TENSORS_DIGEST: ["0" * 64, ""], METADATA_DIGEST: ["0" * 64]})
MALFORMED = {
    "class_names": ["[", "3", '["a", 1]', "null"],
    "calibration": ["{", '{"image_threshold": "0.5"}', '{"image_threshold": NaN}', "[0.5]"],
    "step": ["seven", "7.5", "-1", ""],
    "config": ["[", "model: vq_e", "model: {name: nope}", "data: {image_size: big}", "a: &a [*a]"],
}


def flip(data: bytes, start: int, end: int, count: int, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(count):
        out[rng.randrange(start, end)] ^= rng.randrange(1, 256)
    return bytes(out)


def header_end(data: bytes) -> int:
    return 8 + struct.unpack("<Q", data[:8])[0]  # safetensors: u64 header length, JSON header, tensor bytes


def rewrite(weights: Path, tensors: dict[str, Any], metadata: dict[str, str]) -> None:
    save_file(tensors, str(weights), metadata=metadata)


def damage(kind: str, folder: Path, original: dict[str, Any], rng: random.Random) -> str:
    """Apply one damage of `kind` to the checkpoint copy in `folder`; return what was done."""
    weights, data = folder / WEIGHTS, original["weights"]
    if kind == "tensor bytes flipped":
        n = rng.choice([1, 2, 10, 2000])
        (folder / WEIGHTS).write_bytes(flip(data, header_end(data), len(data), n, rng))
        return f"{n} bytes"
    if kind == "header bytes flipped":
        n = rng.randint(1, 8)
        weights.write_bytes(flip(data, 8, header_end(data), n, rng))
        return f"{n} bytes"
    if kind == "weights truncated":
        cut = rng.randrange(len(data))
        weights.write_bytes(data[:cut])
        return f"at {cut} of {len(data)}"
    metadata = dict(original["metadata"])
    tensors = dict(original["tensors"])
    if kind == "metadata edited":
        key = rng.choice(sorted(EDITS))
        metadata[key] = rng.choice([v for v in EDITS[key] if v != metadata.get(key)])  # a change, not a no-op
        rewrite(weights, tensors, metadata)
        return f"{key} = {metadata[key][:30]!r}"
    if kind == "metadata forged (digest recomputed)":
        key = rng.choice(sorted(MALFORMED))
        metadata[key] = rng.choice(MALFORMED[key])
        metadata[METADATA_DIGEST] = metadata_digest(metadata)
        rewrite(weights, tensors, metadata)
        return f"{key} = {metadata[key][:30]!r}"
    if kind == "non-finite weight (digests recomputed)":
        name = rng.choice(sorted(k for k, v in tensors.items() if v.is_floating_point() and v.numel()))
        value = rng.choice([float("nan"), float("inf"), float("-inf")])
        tensor = tensors[name].clone()
        tensor.view(-1)[rng.randrange(tensor.numel())] = value
        tensors[name] = tensor
        metadata[TENSORS_DIGEST] = tensors_digest(tensors)
        metadata[METADATA_DIGEST] = metadata_digest(metadata)
        rewrite(weights, tensors, metadata)
        return f"{name} ← {value}"
    state = original["state"]
    if kind == "trainer state bytes flipped":
        n = rng.choice([1, 2, 10, 200])
        (folder / TRAINER_STATE).write_bytes(flip(state, 0, len(state), n, rng))
        return f"{n} bytes"
    if kind == "trainer state truncated":
        cut = rng.randrange(len(state))
        (folder / TRAINER_STATE).write_bytes(state[:cut])
        return f"at {cut} of {len(state)}"
    raise ValueError(kind)


KINDS = ("tensor bytes flipped", "header bytes flipped", "weights truncated", "metadata edited",
         "metadata forged (digest recomputed)", "non-finite weight (digests recomputed)",
         "trainer state bytes flipped", "trainer state truncated")


def outcome(kind: str, folder: Path) -> str:
    """How the loaders take the damaged copy; a trainer-state damage is judged by load_trainer_state alone."""
    try:
        if kind.startswith("trainer state"):
            load_trainer_state(folder)
        else:
            load_checkpoint(folder)
            if (folder / TRAINER_STATE).is_file():
                load_trainer_state(folder)
    except CheckpointError:
        return "refused"
    except Exception as err:  # noqa: BLE001 - counting them is the point
        return f"crashed: {type(err).__name__}"
    return "loaded"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a run's checkpoints/last or checkpoints/final folder")
    parser.add_argument("--copies", type=int, default=200, help="damaged copies per kind")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="also write the counts and every loaded or crashed case here")
    args = parser.parse_args()
    source = args.checkpoint
    has_state = (source / TRAINER_STATE).is_file()
    load_checkpoint(source)  # the undamaged checkpoint must load
    if has_state:
        load_trainer_state(source)
    data = (source / WEIGHTS).read_bytes()
    with safe_open(str(source / WEIGHTS), framework="pt") as f:
        metadata = dict(f.metadata())
    original = {"weights": data, "metadata": metadata, "tensors": load_file(str(source / WEIGHTS)),
                "state": (source / TRAINER_STATE).read_bytes() if has_state else b""}
    kinds = [kind for kind in KINDS if (has_state or not kind.startswith("trainer state"))
             and (METADATA_DIGEST or "digest" not in kind)]
    rng = random.Random(args.seed)
    counts: dict[str, collections.Counter] = {kind: collections.Counter() for kind in kinds}
    unseen = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in kinds:
            for i in range(args.copies):
                folder = Path(tmp) / f"copy{i}"
                shutil.copytree(source, folder)
                what = damage(kind, folder, original, rng)
                result = outcome(kind, folder)
                counts[kind][result] += 1
                if result != "refused":
                    unseen.append({"kind": kind, "damage": what, "outcome": result})
                shutil.rmtree(folder)
    print(f"| damage ({args.copies} copies each, seed {args.seed}) | refused | loaded | crashed |")
    print("|---|---|---|---|")
    for kind, counter in counts.items():
        crashed = sum(v for k, v in counter.items() if k.startswith("crashed"))
        print(f"| {kind} | {counter['refused']} | {counter['loaded']} | {crashed} |")
    total = sum(sum(c.values()) for c in counts.values())
    refused = sum(c["refused"] for c in counts.values())
    print(f"\nrefused {refused} of {total}")
    for case in unseen[:20]:
        print(f"not refused: {case}")
    if args.json:
        args.json.write_text(json.dumps({"copies": args.copies, "seed": args.seed,
                                         "counts": {k: dict(v) for k, v in counts.items()}, "unseen": unseen},
                                        indent=2))


if __name__ == "__main__":
    main()
