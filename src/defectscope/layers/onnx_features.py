"""A frozen feature extractor run by onnxruntime on the CPU, for scoring.

The memory models' backbones (MobileNetV2, EfficientNet-Lite: depthwise convolutions) take 3.5–4×
less time per image in onnxruntime than in torch on a 2-core CPU, features equal to ~1e-5
(docs/results/speed.md). The module is exported once, in memory, when a scorer prepares the model;
training, fitting and the exported graph keep torch.
"""

from __future__ import annotations

import contextlib
import io
import logging
import warnings

import numpy as np
import torch
from torch import Tensor, nn

INPUT, OUTPUT = "images", "features"
OPSET = 17  # the TorchScript exporter: seconds for a backbone (the dynamo one takes tens)


def onnxruntime_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def exporting() -> bool:
    """True while torch traces or exports: a graph must hold the torch layers, not a call into a session."""
    return torch.jit.is_tracing() or torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting() \
        or torch.compiler.is_compiling()


class OnnxFeatures:
    """`module` ((B, 3, H, W) → (B, C, h, w), frozen) as an onnxruntime session; any batch and image size.

    Not an nn.Module: it holds no parameters of its own, so checkpoints, `state_dict` and `.to()`
    see only the torch module it was made from. Sessions may be run from several threads at once.
    """

    def __init__(self, module: nn.Module, threads: int) -> None:
        import onnxruntime as ort

        example = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        buffer = io.BytesIO()
        logger = logging.getLogger("torch.onnx")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore")
                torch.onnx.export(module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes={INPUT: {0: "batch", 2: "height", 3: "width"},
                                                OUTPUT: {0: "batch", 2: "rows", 3: "columns"}})
        finally:
            logger.setLevel(level)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # shapes vary with the batch: a planned allocation per shape would be kept for each
        options.enable_mem_pattern = False
        # torch runs the search right after: idle onnxruntime threads spinning for work would take its cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.threads = threads
        self.session = ort.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])

    def __call__(self, images: Tensor) -> Tensor:
        feeds = {INPUT: np.ascontiguousarray(images.detach().numpy(), dtype=np.float32)}
        return torch.from_numpy(self.session.run([OUTPUT], feeds)[0])
