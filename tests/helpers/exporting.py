"""Export tests' helpers: a small, fitted-a-little checkpoint of any registered model, calibrated on demo images.

Weights are untrained (one training step builds lazily-made state such as k-means codebooks;
collect models fit their banks and Gaussians on a few demo images), which is all parity needs:
the graph must compute what torch computes, whatever the weights are.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from defectscope.config import load_config
from defectscope.engine import load_checkpoint, save_checkpoint
from defectscope.engine.checkpoint import Checkpoint
from defectscope.engine.inference import torch_network
from defectscope.geometry import Box
from defectscope.layers.backbones import BackboneConfig
from defectscope.models import MODELS, create_model
from defectscope.models.base import StepContext
from defectscope.scoring.path import MapStandardizer, Viewing, score_canvases
from helpers.calibration import held_out_calibration
from helpers.serving import REPO_ROOT

DEMO = REPO_ROOT / "demo" / "mtsd_mini"
# narrower than the defaults, so that exporting every model stays near a minute on two cores; a key
# a config no longer has is skipped (its default applies), so a renamed field slows the test, never breaks it
SMALL = {
    "ae_ssim": {"base_channels": 8, "latent_dim": 16},
    "vq_e": {"hidden_channels": 16, "residual_blocks": 1, "num_codes": 32, "code_dim": 8},
    "pvqae": {"channels": 8, "channel_mult": (1, 2, 2), "res_blocks": (1, 1, 1), "num_codes": 32, "code_dim": 8,
              "router_hidden": 16, "prior_dim": 16, "prior_heads": 2, "disc_channels": 8},
    "fader": {"channels": (8, 16, 16), "predictor_hidden": 16},
    "vitae": {"embed_dim": 32, "depth": 1, "num_heads": 2, "memory_items": 16, "decoder_channels": (32, 16, 16, 8, 8)},
    "padim": {"n_features": 20},
    "patchcore": {},
    "mean_image": {},
}


def small_config(name: str) -> object:
    """The model's defaults, narrowed by SMALL, with every pretrained backbone at random weights (no file read)."""
    cfg = MODELS[name][1]()
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {k: v for k, v in SMALL.get(name, {}).items() if k in fields}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, BackboneConfig):
            changes[f.name] = dataclasses.replace(value, pretrained=False)
    if "backbone_pretrained" in fields:
        changes["backbone_pretrained"] = False
    return dataclasses.replace(cfg, **changes)


def demo_images(folder: str, count: int, start: int = 0) -> list[np.ndarray]:
    """Grey MTSD tiles as (H, W) uint8 arrays, each its own size (no mask files)."""
    paths = sorted((DEMO / folder / "Imgs").glob("*.jpg"))[start : start + count]
    return [np.asarray(Image.open(p).convert("L")) for p in paths]


def as_batch(images: list[np.ndarray], size: int) -> torch.Tensor:
    from defectscope.data.transforms import resize_image
    from defectscope.detection import image_array

    return torch.stack([resize_image(torch.from_numpy(image_array(a, i)).permute(2, 0, 1), size)
                        for i, a in enumerate(images)])


@torch.no_grad()
def fitted_checkpoint(name: str, directory: Path, size: int = 64, class_names: tuple[str, ...] = ("widget",),
                      standardize: bool = False, seed: int = 0) -> Path:
    """Build, fit a little, calibrate on held-out demo images and save; returns the checkpoint folder."""
    torch.manual_seed(seed)
    cfg = load_config(None, ["--model.name", name, "--data.image_size", str(size)])
    cfg = dataclasses.replace(cfg, model=small_config(name))
    model = create_model(name, cfg.model, size, len(class_names))
    train = as_batch(demo_images("MT_Free", 4), size)
    train_ids = torch.arange(len(train)) % len(class_names)
    for phase in model.phases():
        if phase.kind == "collect":
            model.collect(train, train_ids, phase.name)
            model.finish_collection(phase.name)
        else:
            with torch.enable_grad():
                model.training_step(train, train_ids, StepContext(0, phase=phase.name))  # lazily-built state
            break
    model.eval()
    held_out = as_batch(demo_images("MT_Free", 4, start=10), size)
    held_ids = torch.arange(len(held_out)) % len(class_names)
    standardizer = None
    if standardize:
        out = model.predict(held_out, held_ids)
        standardizer = MapStandardizer.fit(out.anomaly_map.numpy(), held_ids.numpy(), len(class_names))
    network = torch_network(model, torch.device("cpu"))
    maps, scores = score_canvases(network, list(held_out.numpy()), [Box(0, 0, size, size)] * len(held_out),
                                  held_ids.numpy(), Viewing.of(size, "stretch", None), 8, standardizer)
    calibration = held_out_calibration(scores, np.stack(maps), pixel_rate=0.01)
    return save_checkpoint(directory, model, cfg, list(class_names), calibration=calibration,
                           standardizer=standardizer)


@dataclass
class Exported:
    name: str
    folder: Path  # the checkpoint
    checkpoint: Checkpoint
    path: Path  # the .onnx file
    onnx: Any  # its OnnxDetector


def export(name: str, folder: Path, size: int, class_names: tuple[str, ...], standardize: bool = False) -> Exported:
    """fitted_checkpoint, exported with the default (dynamo) exporter and opened in onnxruntime."""
    from defectscope.export.onnx_graph import export_onnx
    from defectscope.export.runtime import OnnxDetector

    ckpt = fitted_checkpoint(name, folder / "ckpt", size, class_names, standardize)
    checkpoint = load_checkpoint(ckpt)
    export_onnx(checkpoint, folder / "model.onnx")
    return Exported(name, ckpt, checkpoint, folder / "model.onnx", OnnxDetector(folder / "model.onnx"))
