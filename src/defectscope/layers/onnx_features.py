"""A frozen feature extractor run by onnxruntime on the CPU, for scoring.

The memory models' backbones (MobileNetV2, EfficientNet-Lite: depthwise convolutions) take 2–4×
less time per image in onnxruntime than in torch on a 2-core CPU, features equal to ~1e-5
(docs/results/speed.md). The module is exported once, in memory, when a scorer prepares the model;
training, fitting and the exported graph keep torch.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from typing import Any

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
    """`module` ((B, 3, H, W) → (B, C, h, w), frozen) as onnxruntime sessions, one per image size, any batch.

    One graph per size, not one with a symbolic size: a traced backbone keeps the padding it computed
    for the size it was traced at (EfficientNet-Lite pads like TensorFlow's "same", from the input's
    size), so a graph traced at one size gives wrong features at another. The working size is built
    when the model is prepared; another size gets its own session on first use (about a second), up to
    `MAX_SIZES`, and torch beyond that (`None`).

    Not an nn.Module: it holds no parameters of its own, so checkpoints, `state_dict` and `.to()`
    see only the torch module; each session keeps the weights as they were when it was built
    (a frozen backbone's never change; load other weights, and prepare again).
    Sessions may be run from several threads at once.
    """

    MAX_SIZES = 8  # sizes other than the prepared one are rare (a caller scoring by hand): past a few, torch

    def __init__(self, module: nn.Module, threads: int, size: tuple[int, int] | None = None) -> None:
        import onnxruntime as ort

        self.module, self.threads = module, threads
        self.options = ort.SessionOptions()
        self.options.intra_op_num_threads = threads
        self.options.inter_op_num_threads = 1
        # the batch varies: a planned allocation per shape would be kept for each
        self.options.enable_mem_pattern = False
        # torch runs the search right after: idle onnxruntime threads spinning for work would take its cores
        self.options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.sessions: dict[tuple[int, int], Any] = {}  # None: that size failed to build (torch for it)
        self._building = threading.Lock()
        if size is not None:
            self.session(size, strict=True)

    def session(self, size: tuple[int, int], strict: bool = False) -> Any:
        """The session for (height, width) images, built on first use; None past MAX_SIZES sizes or where
        it could not be built (`strict`: raise that error instead: the prepared size's build)."""
        if size in self.sessions or len(self.sessions) >= self.MAX_SIZES:
            return self.sessions.get(size)
        with self._building:
            if size not in self.sessions and len(self.sessions) < self.MAX_SIZES:
                try:
                    self.sessions[size] = self._build(size)
                except Exception as err:  # noqa: BLE001 - an exporter or runtime failure leaves this size to torch
                    if strict:
                        raise
                    self.sessions[size] = None
                    warnings.warn(f"features for {size[0]}x{size[1]} images could not run in onnxruntime "
                                  f"({type(err).__name__}: {err}); computed in torch", RuntimeWarning, stacklevel=2)
            return self.sessions.get(size)

    def _build(self, size: tuple[int, int]) -> Any:
        import onnxruntime as ort

        example = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
        buffer = io.BytesIO()
        logger = logging.getLogger("torch.onnx")
        level = logger.level
        logger.setLevel(logging.ERROR)
        try:
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter's notice that it is the older one
                torch.onnx.export(self.module.eval(), (example,), buffer, dynamo=False, opset_version=OPSET,
                                  input_names=[INPUT], output_names=[OUTPUT],
                                  dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}})
        finally:
            logger.setLevel(level)
        return ort.InferenceSession(buffer.getvalue(), self.options, providers=["CPUExecutionProvider"])

    def __call__(self, images: Tensor) -> Tensor | None:
        """The features of (B, 3, H, W) images, or None where this size has no session (torch then)."""
        session = self.session((int(images.shape[-2]), int(images.shape[-1])))
        if session is None:
            return None
        feeds = {INPUT: np.ascontiguousarray(images.detach().numpy(), dtype=np.float32)}
        return torch.from_numpy(session.run([OUTPUT], feeds)[0])
