"""Scoring a test set: anomaly maps → metrics per category and mean, speed and memory."""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from defectscope.config import RunConfig
from defectscope.engine.environment import environment
from defectscope.engine.files import json_default, write_text_atomic
from defectscope.engine.standardize import MapStandardizer, require_held_out_images
from defectscope.metrics import compute_metrics, f1_max, image_auroc
from defectscope.models import AnomalyModel
from defectscope.models.base import ModelOutput

METRIC_NAMES = ("image_auroc", "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")


@dataclass
class Predictions:
    """Everything scored on a test set, in dataset order, on the CPU."""

    image_scores: np.ndarray  # (N,)
    maps: np.ndarray  # (N, H, W) float32
    masks: np.ndarray  # (N, H, W) bool
    labels: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,)
    paths: list[str]
    model_seconds: float  # time spent inside model.predict


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def predict_dataset(
    model: AnomalyModel,
    dataset: Dataset,
    batch_size: int,
    device: torch.device,
    keep_maps: bool = True,
    standardizer: MapStandardizer | None = None,
) -> Predictions:
    model.eval().to(device)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    scores, maps, masks, labels, class_ids, paths = [], [], [], [], [], []
    seconds = 0.0
    for batch in loader:
        images = batch.image.to(device)
        _sync(device)
        began = time.perf_counter()
        out = model.predict(images, batch.class_id.to(device))
        if standardizer is not None:
            out = standardizer(out, batch.class_id)
        _sync(device)
        seconds += time.perf_counter() - began
        scores.append(out.image_score.float().cpu().numpy())
        if keep_maps:
            maps.append(out.anomaly_map.float().cpu().numpy())
            masks.append(batch.mask[:, 0].bool().numpy())
        labels.append(np.asarray(batch.label))
        class_ids.append(np.asarray(batch.class_id))
        paths.extend(batch.path)
    empty = np.zeros((0, 1, 1), np.float32)
    return Predictions(
        image_scores=np.concatenate(scores) if scores else np.zeros(0, np.float32),
        maps=np.concatenate(maps) if maps else empty,
        masks=np.concatenate(masks) if masks else empty.astype(bool),
        labels=np.concatenate(labels) if labels else np.zeros(0, int),
        class_ids=np.concatenate(class_ids) if class_ids else np.zeros(0, int),
        paths=paths,
        model_seconds=seconds,
    )


def calibrate(
    model: AnomalyModel, validation: Dataset, cfg: RunConfig, device: torch.device, num_classes: int = 1
) -> tuple[dict[str, float], MapStandardizer | None]:
    """Thresholds (and the map standardiser, if configured) from held-out *normal* images only.

    image_threshold is the largest validation image score (no held-out normal image is
    flagged); pixel_threshold is the 99.9th percentile of validation pixel scores, used to
    scale heatmaps for display. Both are taken after standardisation when it is on.
    """
    require_held_out_images(cfg.eval.map_standardization, len(validation))
    if len(validation) == 0:
        return {}, None
    was_training = model.training
    preds = predict_dataset(model, validation, cfg.data.eval_batch_size, device)
    standardizer = None
    if cfg.eval.map_standardization == "position":
        standardizer = MapStandardizer.fit(preds.maps, preds.class_ids, num_classes)
        z = standardizer(ModelOutput(torch.from_numpy(preds.maps), torch.from_numpy(preds.image_scores)),
                         torch.from_numpy(preds.class_ids))
        preds = dataclasses.replace(preds, maps=z.anomaly_map.numpy(), image_scores=z.image_score.numpy())
    model.train(was_training)
    calibration = {
        "image_threshold": float(preds.image_scores.max()),
        "image_score_mean": float(preds.image_scores.mean()),
        "image_score_std": float(preds.image_scores.std()),
        "pixel_threshold": float(np.quantile(preds.maps, 0.999)),
        "num_validation_images": len(validation),
    }
    return calibration, standardizer


def category_metrics(
    preds: Predictions, class_names: list[str], pixel_metrics: bool = True
) -> dict[str, dict[str, float]]:
    per_category: dict[str, dict[str, float]] = {}
    for class_id, name in enumerate(class_names):
        pick = preds.class_ids == class_id
        if not pick.any():
            continue
        if pixel_metrics:
            per_category[name] = compute_metrics(
                preds.image_scores[pick], preds.labels[pick], preds.maps[pick], preds.masks[pick]
            )
        else:
            per_category[name] = {
                "image_auroc": image_auroc(preds.image_scores[pick], preds.labels[pick]),
                "image_f1_max": f1_max(preds.image_scores[pick], preds.labels[pick]),
            }
    return per_category


def mean_metrics(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted mean over categories (the MVTec convention); NaN entries are left out."""
    keys = sorted({k for m in per_category.values() for k in m})
    out = {}
    for key in keys:
        values = [m[key] for m in per_category.values() if key in m and not math.isnan(m[key])]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def peak_memory() -> dict[str, float]:
    """Peak resident memory of this process (and GPU memory when on a GPU), in MiB."""
    out = {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        out["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def evaluate(
    model: AnomalyModel,
    test_set: Dataset,
    class_names: list[str],
    cfg: RunConfig,
    device: torch.device,
    output_dir: str | Path,
    checkpoint: str | Path | None = None,
    calibration: dict[str, float] | None = None,
    save_maps: bool | None = None,
    artifacts: bool = True,
    gallery_per_end: int = 4,
    standardizer: MapStandardizer | None = None,
) -> dict[str, Any]:
    """Score the test set, write results.json and results.md, return the results.

    With `artifacts`, also scores.csv, curves.json and gallery/ for `defectscope report`.
    """
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    preds = predict_dataset(model, test_set, cfg.data.eval_batch_size, device, standardizer=standardizer)
    wall = time.perf_counter() - began
    per_category = category_metrics(preds, class_names, cfg.eval.pixel_metrics)
    n = len(preds.image_scores)
    results: dict[str, Any] = {
        "model": cfg.model_name,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "image_size": cfg.data.image_size,
        "num_test_images": n,
        "categories": per_category,
        "mean": mean_metrics(per_category),
        "images_per_second": n / preds.model_seconds if preds.model_seconds > 0 else float("nan"),
        "images_per_second_end_to_end": n / wall if wall > 0 else float("nan"),
        "eval_batch_size": cfg.data.eval_batch_size,
        "map_standardization": cfg.eval.map_standardization if standardizer is not None else "none",
        **peak_memory(),
        "calibration": calibration or {},
        "environment": environment(device),
    }
    if save_maps if save_maps is not None else cfg.eval.save_maps:
        from defectscope.engine.maps import save_anomaly_maps

        results["maps_dir"] = str(save_anomaly_maps(preds, test_set, output_dir / "maps", calibration or {},
                                                     cfg.eval.max_saved_maps, model, device))
    if artifacts:
        from defectscope.engine.artifacts import save_artifacts

        results["artifacts"] = save_artifacts(model, preds, test_set, class_names, per_category, output_dir, device,
                                              cfg.eval.pixel_metrics, gallery_per_end)
    write_text_atomic(output_dir / "results.json", json.dumps(results, indent=2, default=json_default))
    write_text_atomic(output_dir / "results.md", results_markdown(results))
    return results


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.3f}"


def results_markdown(results: dict[str, Any]) -> str:
    header = "| category | " + " | ".join(METRIC_NAMES) + " |"
    lines = [
        f"# {results['model']} — {results['num_test_images']} test images at {results['image_size']} px",
        "",
        header,
        "|" + "---|" * (len(METRIC_NAMES) + 1),
    ]
    rows = list(results["categories"].items())
    if len(rows) > 1:
        rows.append(("**mean**", results["mean"]))
    for name, metrics in rows:
        lines.append(f"| {name} | " + " | ".join(_fmt(metrics.get(k)) for k in METRIC_NAMES) + " |")
    env = results["environment"]
    lines += [
        "",
        f"Inference: {results['images_per_second']:.1f} images/s (model only, batch "
        f"{results['eval_batch_size']}), {results['images_per_second_end_to_end']:.1f} images/s end to end; "
        f"peak RSS {results['peak_rss_mib']:.0f} MiB"
        + (f", peak GPU {results['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in results else "")
        + ".",
        f"Machine: {env['device_name']}, torch {env['torch']}, commit {env['commit']}, {env['date']}.",
        "",
    ]
    return "\n".join(lines)
