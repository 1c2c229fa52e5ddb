"""A checkpoint's whole scoring path as one ONNX graph, written with `torch.onnx.export`.

The graph is the network, what `model.predict` runs: normalisation, network, anomaly map,
smoothing, the network's own image score, PVQAE's prior step, PatchCore's nearest-neighbour
search and PaDiM's Mahalanobis distance (plain matrix products, no faiss). What follows it —
tiles, border, map standardiser, image score, thresholds — is `defectscope.scoring.path`, which
the runtime runs on the graph's outputs as the torch path runs it on the model's; the
calibration, geometry and standardiser travel in the metadata. Input and output layout:
`defectscope.export.metadata.INPUT_LAYOUT`. The batch size is dynamic.

Every registered model exports with the dynamo-based exporter (`torch.export` + onnxscript), the
path torch 2.13 maintains; the TorchScript-based one stays selectable (`exporter="torchscript"`)
for runtimes that need an opset below 18.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from defectscope.engine.checkpoint import FORMAT as CHECKPOINT_FORMAT
from defectscope.engine.checkpoint import Checkpoint
from defectscope.export.metadata import INPUTS, OUTPUTS, ExportError, ExportInfo, standardizer_entry
from defectscope.export.runtime import OnnxDetector
from defectscope.geometry import as_hw
from defectscope.models.patchcore.memory_bank import exact_search
from defectscope.version import __version__

__all__ = ["InferenceGraph", "compare_with_torch", "export_onnx", "write_metadata"]

Exporter = Literal["dynamo", "torchscript"]
MIN_DYNAMO_OPSET = 18  # the dynamo exporter's onnxscript functions are written for opset 18 and newer
TORCHSCRIPT_OPSET = 17  # the TorchScript exporter's default when none is asked for


class InferenceGraph(nn.Module):
    """`model.predict` as a module: images (and class ids) in, (anomaly_map, image_score) out."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        super().__init__()
        self.model = checkpoint.model.eval()  # registered, so the export sees its parameters and buffers

    def forward(self, images: Tensor, class_ids: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if class_ids is None:  # one class; shape[0], not len(), keeps the batch size symbolic
            class_ids = torch.zeros(images.shape[0], dtype=torch.long, device=images.device)
        out = self.model.predict(images, class_ids)
        return out.anomaly_map, out.image_score


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[io.StringIO]:
    """Collect the exporters' progress prints and warnings (shown only when an export fails)."""
    buffer = io.StringIO()
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    try:
        with contextlib.redirect_stdout(buffer), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield buffer
    finally:
        logger.setLevel(level)


def export_onnx(checkpoint: Checkpoint, output: str | Path, opset: int | None = None,
                exporter: Exporter = "dynamo") -> ExportInfo:
    """Write `checkpoint` as one ONNX file with its metadata; written under a temporary name, then renamed."""
    output = Path(output)
    name = checkpoint.config.model_name
    if exporter not in ("dynamo", "torchscript"):
        raise ExportError(f"exporter must be 'dynamo' or 'torchscript', got {exporter!r}")
    if exporter == "dynamo" and opset is not None and opset < MIN_DYNAMO_OPSET:
        raise ExportError(f"opset {opset}: the dynamo exporter writes opset {MIN_DYNAMO_OPSET} or newer "
                          "(use --exporter torchscript for an older runtime)")
    data = checkpoint.config.data
    height, width = as_hw(data.model_input_size)
    generator = torch.Generator().manual_seed(0)
    example: tuple[Tensor, ...] = (torch.rand(2, 3, height, width, generator=generator),)
    if len(checkpoint.class_names) > 1:
        example += (torch.zeros(2, dtype=torch.long),)
    names = list(INPUTS[: len(example)])
    graph = InferenceGraph(checkpoint).eval()
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        with torch.no_grad(), _quiet_exporter() as log:
            try:
                if exporter == "dynamo":
                    batch = torch.export.Dim("batch", min=1)
                    program = torch.onnx.export(
                        graph, example, dynamo=True, opset_version=opset, input_names=names,
                        output_names=list(OUTPUTS), dynamic_shapes=tuple({0: batch} for _ in example),
                        optimize=True, verbose=False,
                    )
                    program.save(tmp, external_data=False)
                else:
                    torch.onnx.export(
                        graph, example, str(tmp), dynamo=False, opset_version=opset or TORCHSCRIPT_OPSET,
                        input_names=names, output_names=list(OUTPUTS),
                        dynamic_axes={n: {0: "batch"} for n in (*names, *OUTPUTS)},
                    )
            except Exception as err:  # noqa: BLE001 - any exporter failure gets the model's name and the way out
                detail = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                other = "torchscript" if exporter == "dynamo" else "dynamo"
                raise ExportError(f"{name}: the {exporter} exporter failed ({detail[:400]}); try --exporter {other}"
                                  + (f"\nexporter output:\n{log.getvalue()[-2000:]}" if log.getvalue() else "")
                                  ) from err
        info = write_metadata(tmp, checkpoint, exporter)
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o666 & ~umask)  # mkstemp makes the file private; give it a plain file's permissions
        os.replace(tmp, output)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return info


def write_metadata(path: Path, checkpoint: Checkpoint, exporter: Exporter) -> ExportInfo:
    """Write the checkpoint's classes, geometry, calibration and standardiser into the graph file at `path`."""
    import onnx

    data = checkpoint.config.data
    model = onnx.load(str(path))
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    info = ExportInfo(
        model_name=checkpoint.config.model_name,
        class_names=list(checkpoint.class_names),
        image_size=list(data.image_size) if isinstance(data.image_size, tuple) else int(data.image_size),
        resize=data.resize,
        tiling=None if data.tiling.kind == "none" else {"tile": data.tiling.tile, "stride": data.tiling.stride,
                                                       "merge": data.tiling.merge},
        calibration=None if checkpoint.calibration is None else checkpoint.calibration.to_dict(),
        map_standardizer=standardizer_entry(checkpoint.standardizer),
        checkpoint_format=CHECKPOINT_FORMAT,
        checkpoint_step=int(checkpoint.step),
        defectscope_version=__version__,
        exporter=exporter,
        opset=int(opset),
    )
    del model.metadata_props[:]
    onnx.helper.set_model_props(model, info.props())
    onnx.save(model, str(path))
    return info


@torch.no_grad()
def compare_with_torch(checkpoint: Checkpoint, exported: str | Path | OnnxDetector, batch_sizes: Sequence[int] = (1, 3),
                       seed: int = 0) -> dict[str, float]:
    """Largest |onnxruntime − torch| of the network's maps and scores on random images at each batch size.

    torch searches a memory bank exactly here, as the graph does; with `search: hnsw` its image
    scores are the exact ones anyway and only its maps may read a little higher.

    Also returns the largest |map| torch produced, so a difference can be read against the maps' scale.
    """
    detector = exported if isinstance(exported, OnnxDetector) else OnnxDetector(exported)
    height, width = as_hw(checkpoint.config.data.model_input_size)
    generator = torch.Generator().manual_seed(seed)
    checkpoint.model.eval()
    found = {"map": 0.0, "score": 0.0, "map_scale": 0.0}
    for batch in batch_sizes:
        images = torch.rand(batch, 3, height, width, generator=generator)
        class_ids = torch.arange(batch) % len(detector.class_names)
        with exact_search():  # the graph searches a bank exactly, whatever the checkpoint's search
            ref = checkpoint.model.predict(images, class_ids)
        maps, scores = detector.network(images.numpy(), class_ids.numpy())
        found["map"] = max(found["map"], float(np.abs(maps - ref.anomaly_map.numpy()).max()))
        found["score"] = max(found["score"], float(np.abs(scores - ref.image_score.numpy()).max()))
        found["map_scale"] = max(found["map_scale"], float(ref.anomaly_map.abs().max()))
    return {"max_map_diff": found["map"], "max_score_diff": found["score"], "max_abs_map": found["map_scale"]}
