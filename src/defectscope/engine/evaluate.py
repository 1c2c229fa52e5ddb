"""Scoring a test set: anomaly maps → metrics per category and mean, speed and memory, and the
files a report draws from (scores, curves, gallery)."""

from __future__ import annotations

import dataclasses
import json
import math
import resource
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from defectscope.config import RunConfig
from defectscope.data.working_size import ResolvedSize
from defectscope.engine.artifacts import CURVES_JSON, SCORES_CSV, category_curves, save_scores
from defectscope.engine.environment import environment
from defectscope.engine.files import json_default, write_text_atomic
from defectscope.engine.gallery import GalleryPlan, write_gallery
from defectscope.engine.inference import viewing_of
from defectscope.engine.predictions import Predictions, predict_dataset
from defectscope.metrics import Measurement, f1_max, image_auroc, image_auroc_interval, measure, pixel_auroc_interval
from defectscope.metrics.curves import roc_curve
from defectscope.metrics.operating_point import (
    OPERATING_RATES,
    binomial_interval,
    catch_rate_at,
    catch_rate_interval,
    catch_rate_key,
)
from defectscope.models.base import AnomalyModel
from defectscope.scoring.calibration import Calibration
from defectscope.scoring.path import MapStandardizer

# the catch rates lead: what a line running at a false-alarm rate of 1 % (5 %) gets, beside the AUROC
CATCH_METRICS = tuple(catch_rate_key(rate) for rate in OPERATING_RATES)
METRIC_NAMES = ("image_auroc", *CATCH_METRICS, "pixel_auroc", "aupro", "image_f1_max", "pixel_f1_max")


def category_measurements(
    preds: Predictions, class_names: list[str], pixel_metrics: bool = True
) -> dict[str, Measurement]:
    """Metrics and curves per category present in the predictions."""
    measured: dict[str, Measurement] = {}
    for class_id, name in enumerate(class_names):
        pick = preds.class_ids == class_id
        if not pick.any():
            continue
        scores, labels = preds.image_scores[pick], preds.labels[pick]
        if pixel_metrics:
            found = measure(scores, labels, preds.maps[pick], preds.masks[pick],
                            valid=None if preds.valid is None else preds.valid[pick])
        else:
            metrics = {"image_auroc": image_auroc(scores, labels), "image_f1_max": f1_max(scores, labels)}
            found = Measurement(metrics, roc_curve(scores, labels), None, None)
        found.metrics.update({key: catch_rate_at(scores, labels, rate)
                              for key, rate in zip(CATCH_METRICS, OPERATING_RATES, strict=True)})
        measured[name] = found
    return measured


INTERVAL_METRICS = ("image_auroc", *CATCH_METRICS, "pixel_auroc")


def category_intervals(
    preds: Predictions, class_names: list[str], resamples: int, seed: int, pixel_metrics: bool = True
) -> dict[str, dict[str, list[float]]]:
    """95 % stratified bootstrap intervals (over images) of each category's AUROCs, and of their mean.

    The mean's bounds are the means of the categories' bounds: as wide as if the categories'
    errors were perfectly correlated, so never narrower than the truth.
    """
    out: dict[str, dict[str, list[float]]] = {}
    for class_id, name in enumerate(class_names):
        pick = preds.class_ids == class_id
        if not pick.any():
            continue
        scores, labels = preds.image_scores[pick], preds.labels[pick]
        found = {"image_auroc": list(image_auroc_interval(scores, labels, resamples=resamples, seed=seed))}
        for key, rate in zip(CATCH_METRICS, OPERATING_RATES, strict=True):
            found[key] = list(catch_rate_interval(scores, labels, rate, resamples=resamples, seed=seed))
        if pixel_metrics:
            found["pixel_auroc"] = list(pixel_auroc_interval(
                preds.maps[pick], preds.masks[pick], resamples=resamples, seed=seed,
                valid=None if preds.valid is None else preds.valid[pick]))
        out[name] = found
    if len(out) > 1:
        out["mean"] = {key: [float(np.nanmean([v[key][i] for v in out.values() if key in v])) for i in (0, 1)]
                       for key in INTERVAL_METRICS if all(key in v for v in out.values())}
    return out


class UndefinedMetricWarning(UserWarning):
    """A metric the test set cannot measure (no normal image, no defect pixel ...); it is reported as undefined."""


def undefined_metrics(preds: Predictions, pick: np.ndarray, pixel_metrics: bool) -> dict[str, str]:
    """Metric → why the picked test images cannot measure it.

    AUROC needs both kinds; F1-max too, though its formula gives a number: with no normal
    image, flagging everything scores a perfect 1.0, which measures nothing.
    """
    labels = preds.labels[pick]
    why: dict[str, str] = {}
    for reason, missing in (("no normal test image", not (labels == 0).any()),
                            ("no defective test image", not (labels == 1).any())):
        if missing:
            why.update({"image_auroc": reason, "image_f1_max": reason, **dict.fromkeys(CATCH_METRICS, reason)})
            break
    if pixel_metrics:
        _, mask_pixels = preds.pixels(pick)
        defect_pixels = int(np.count_nonzero(mask_pixels))
        for reason, missing in (("no defect pixel in the test masks", defect_pixels == 0),
                                ("no defect-free pixel in the test images", defect_pixels == mask_pixels.size)):
            if missing:
                why.update({"pixel_auroc": reason, "aupro": reason, "pixel_f1_max": reason})
                break
    return why


def mean_metrics(per_category: dict[str, dict[str, float]]) -> dict[str, float]:
    """Unweighted mean over categories (the MVTec convention); NaN entries are left out."""
    keys = sorted({k for m in per_category.values() for k in m})
    out = {}
    for key in keys:
        values = [m[key] for m in per_category.values() if key in m and not math.isnan(m[key])]
        out[key] = float(np.mean(values)) if values else float("nan")
    return out


def flagged(preds: Predictions, class_names: list[str], calibration: Calibration) -> np.ndarray:
    """The verdict `predict` and `serve` give: the score above its class's image threshold."""
    names = class_names or ["default"]
    thresholds = np.array([calibration.for_class(names[c]).threshold.value for c in preds.class_ids], np.float64)
    return np.asarray(preds.image_scores, np.float64) > thresholds


def _rate(count: int, total: int) -> dict[str, Any]:
    """A count at a threshold fixed before the test: its rate and exact binomial 95 % interval."""
    return {"count": count, "total": total, "rate": count / total if total else float("nan"),
            "interval": list(binomial_interval(count, total))}


def _mean_rate(entries: list[dict[str, Any]]) -> float:
    """Unweighted over categories (the metrics' convention); a category without such images is left out."""
    rates = [e["rate"] for e in entries if e["total"]]
    return float(np.mean(rates)) if rates else float("nan")


def threshold_rates(preds: Predictions, class_names: list[str], calibration: Calibration | None
                    ) -> dict[str, Any] | None:
    """Promised vs measured: false alarms among normal test images and misses among defective ones
    at the calibrated image threshold, per category, their unweighted mean, and pooled counts."""
    if calibration is None:
        return None
    defect = flagged(preds, class_names, calibration)
    normal = preds.labels == 0
    categories: dict[str, Any] = {}
    for class_id, name in enumerate(class_names):
        pick = preds.class_ids == class_id
        if pick.any():
            categories[name] = {
                "false_alarms": _rate(int((defect & normal & pick).sum()), int((normal & pick).sum())),
                "misses": _rate(int((~defect & ~normal & pick).sum()), int((~normal & pick).sum())),
            }
    mean = {key: _mean_rate([c[key] for c in categories.values()]) for key in ("false_alarms", "misses")}
    pooled = calibration.image.threshold
    for class_id, name in enumerate(class_names):
        if name in categories:
            pick = preds.class_ids == class_id
            threshold = calibration.for_class(name).threshold
            categories[name].update({
                "caught": _rate(int((defect & ~normal & pick).sum()), int((~normal & pick).sum())),
                "image_threshold": threshold.value,
                "promised_false_alarm_rate": threshold.false_alarm_rate,
                "false_alarm_bound": threshold.bound,
                "held_out_normals": threshold.n,
                # what the best threshold on the test ROC catches at the stated rate: the calibrated
                # threshold can at most match it, and the gap is what calibration costs
                "roc_catch_at_stated_rate": catch_rate_at(preds.image_scores[pick], preds.labels[pick],
                                                          threshold.false_alarm_rate),
            })
    return {
        "image_threshold": pooled.value,
        "promised_false_alarm_rate": pooled.false_alarm_rate,
        "false_alarm_bound": pooled.bound,
        "held_out_normals": pooled.n,
        "rank": pooled.rank,
        "categories": categories,
        "mean": {"false_alarm_rate": mean["false_alarms"], "miss_rate": mean["misses"]},
        "all": {"false_alarms": _rate(int((defect & normal).sum()), int(normal.sum())),
                "misses": _rate(int((~defect & ~normal).sum()), int((~normal).sum()))},
    }


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
    calibration: Calibration | None = None,
    standardizer: MapStandardizer | None = None,
    gallery: GalleryPlan | None = None,
    health: dict[str, Any] | None = None,
    working_size: ResolvedSize | None = None,
) -> dict[str, Any]:
    """Score the test set with the model as given; write results.json, results.md, scores.csv,
    curves.json and gallery/ (and maps/ when the plan asks for pictures); return the results."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    gallery = gallery or GalleryPlan()
    began = time.perf_counter()
    preds = predict_dataset(model, test_set, cfg.data.eval_batch_size, device, standardizer=standardizer,
                            viewing=viewing_of(cfg.data), resolution=cfg.eval.resolution)
    wall = time.perf_counter() - began
    measured = category_measurements(preds, class_names, cfg.eval.pixel_metrics)
    per_category = {name: dict(m.metrics) for name, m in measured.items()}
    undefined = {}
    for class_id, name in enumerate(class_names):
        if name in per_category:
            why = undefined_metrics(preds, preds.class_ids == class_id, cfg.eval.pixel_metrics)
            per_category[name].update({metric: float("nan") for metric in why})
            if why:
                undefined[name] = why
                listed = "; ".join(f"{metric}: {reason}" for metric, reason in why.items())
                warnings.warn(f"{name}: undefined, reported as such ({listed})", UndefinedMetricWarning,
                              stacklevel=2)
    resamples = cfg.eval.bootstrap_resamples
    intervals = category_intervals(preds, class_names, resamples, cfg.train.seed, cfg.eval.pixel_metrics) \
        if resamples > 0 else {}
    n = len(preds.image_scores)
    results: dict[str, Any] = {
        "model": cfg.model_name,
        "checkpoint": str(checkpoint) if checkpoint else None,
        "image_size": cfg.data.image_size,
        "geometry": geometry_fields(cfg, working_size),
        "num_test_images": n,
        "categories": per_category,
        "mean": mean_metrics(per_category),
        "intervals": intervals,
        "interval_method": f"95 % stratified bootstrap over test images, {resamples} resamples, seed {cfg.train.seed}"
        if intervals else None,
        "images_per_second": n / preds.model_seconds if preds.model_seconds > 0 else float("nan"),
        "images_per_second_end_to_end": n / wall if wall > 0 else float("nan"),
        "eval_batch_size": cfg.data.eval_batch_size,
        "map_standardization": cfg.eval.map_standardization if standardizer is not None else "none",
        **peak_memory(),
        "calibration": None if calibration is None else calibration.to_dict(),
        "health": health or {},
        "undefined": undefined,  # category → metric → why the test set cannot measure it
        "thresholds": threshold_rates(preds, class_names, calibration),
        "environment": environment(device),
    }
    save_scores(preds, class_names, test_set, output_dir / SCORES_CSV)
    curves = category_curves(measured)
    write_text_atomic(output_dir / CURVES_JSON, json.dumps(curves, allow_nan=False, default=json_default))
    written = write_gallery(model, preds, test_set, class_names, output_dir, device, gallery,
                            None if calibration is None or calibration.pixel is None else calibration.pixel.value,
                            tiled=cfg.data.tiling.kind == "tiles")
    results["artifacts"] = {"scores": SCORES_CSV, "curves": CURVES_JSON, "gallery": written["gallery"]}
    if "maps_dir" in written:
        results["maps_dir"] = written["maps_dir"]
    write_text_atomic(output_dir / "results.json",
                      json.dumps(_nan_to_null(results), indent=2, allow_nan=False, default=json_default))
    write_text_atomic(output_dir / "results.md", results_markdown(results))
    return results


def geometry_fields(cfg: RunConfig, working_size: ResolvedSize | None = None) -> dict[str, Any]:
    """How images reached the model and at which resolution the pixel metrics were taken."""
    data = cfg.data
    tiling = data.tiling
    return {
        "resize": data.resize,
        "image_size": None if data.resize == "none" else data.image_size,
        # `auto`: what the size was chosen from
        "auto": None if working_size is None else dataclasses.asdict(working_size),
        "tiling": None if tiling.kind == "none" else {"tile": tiling.tile, "stride": tiling.stride,
                                                       "merge": tiling.merge, "train": tiling.train},
        "resolution": cfg.eval.resolution,
    }


def geometry_sentence(geometry: dict[str, Any] | None) -> str:
    """One line for results.md and the report: how the model saw the images, where metrics were taken."""
    if not geometry:
        return ""
    seen = {"stretch": f"stretched to {geometry['image_size']}", "none": "at their own size",
            "keep_aspect": f"scaled to fit {geometry['image_size']} (aspect kept, border ignored)"}[geometry["resize"]]
    auto = geometry.get("auto")
    if auto and geometry["resize"] != "none":
        seen += (" (a square: the model needs square inputs)" if auto["square"] else
                 f" (auto: the median height/width {auto['aspect']:.3g} of {auto['images']} training images)")
    tiling = geometry.get("tiling")
    if tiling:
        seen += f", in {tiling['tile']} px tiles {tiling['stride']} px apart (overlaps: {tiling['merge']})"
    where = ("at each image's original resolution, against the masks as drawn" if geometry["resolution"] == "original"
             else "at the working resolution, against resized masks")
    return f"Images {seen}; pixel metrics {where}."


def _nan_to_null(value: Any) -> Any:
    """NaN (an undefined metric) → None, so results.json is strict JSON with `null` where nothing was measured."""
    if isinstance(value, float | np.floating) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_null(v) for v in value]
    return value


def _fmt(value: float | None, interval: list[float] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if interval and not any(math.isnan(v) for v in interval):
        return f"{value:.3f} ({interval[0]:.3f}–{interval[1]:.3f})"
    return f"{value:.3f}"


def _health_lines(health: dict[str, Any]) -> list[str]:
    lines = []
    if "heldout_loss" in health:
        lines.append(f"Training health: held-out normal reconstruction loss {health['heldout_loss']:.4f}, "
                     f"the class mean image's {health['mean_image_loss']:.4f} (L1+L2 on [−1, 1]).")
    lines += [f"**Warning:** {w}." for w in health.get("warnings", [])]
    return lines


def _percent(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * value:.1f} %"


def _counted(entry: dict[str, Any]) -> str:
    if not entry["total"]:
        return "– (0 images)"
    interval = entry.get("interval")
    spread = f", {_percent(interval[0])}–{_percent(interval[1])}" if interval else ""
    return f"{entry['count']}/{entry['total']} ({_percent(entry['rate'])}{spread})"


def promise_sentence(thresholds: dict[str, Any]) -> str:
    """What the image threshold promises, and whether the held-out set was large enough to promise the stated rate."""
    promised, bound = thresholds.get("promised_false_alarm_rate"), thresholds.get("false_alarm_bound")
    value = f"{thresholds['image_threshold']:.6g}"
    if promised is None:
        return f"Image threshold {value}, calibrated before false-alarm rates were stated (no promise)."
    n = thresholds["held_out_normals"]
    text = (f"Image threshold {value}: rank {thresholds['rank']} of {n} held-out normal scores for a stated "
            f"false-alarm rate of {_percent(promised)}")
    if bound > promised:
        text += (f"; {n} held-out images are too few for that rate, so it is their largest score, which "
                 f"promises ≤ {_percent(bound)} (1/(n+1))")
    else:
        text += f", which promises ≤ {_percent(bound)}"
    return text + " on normal images like the held-out ones."


def thresholds_markdown(thresholds: dict[str, Any] | None) -> list[str]:
    """The promised false-alarm rate beside what the test set measured at the calibrated threshold."""
    if not thresholds:
        return ["No calibrated image threshold (no held-out normal images): no verdicts to count.", ""]
    lines = [
        "## Thresholds: promised vs measured false alarms",
        "",
        promise_sentence(thresholds),
        "",
        "| category | promised false alarms | measured false alarms (normal test images flagged) "
        "| defects caught at the threshold | test ROC's best at the stated rate | misses |",
        "|---|---|---|---|---|---|",
    ]
    for name, entry in thresholds["categories"].items():
        bound = entry.get("false_alarm_bound", thresholds.get("false_alarm_bound"))
        caught = entry.get("caught")
        best = entry.get("roc_catch_at_stated_rate")
        promise = "–" if bound is None else "≤ " + _percent(bound)
        lines.append(f"| {name} | {promise} | {_counted(entry['false_alarms'])} "
                     f"| {'–' if caught is None else _counted(caught)} | {'–' if best is None else _percent(best)} "
                     f"| {_counted(entry['misses'])} |")
    if len(thresholds["categories"]) > 1:
        pooled = thresholds["all"]
        lines.append(f"| all images | | {_counted(pooled['false_alarms'])} | | | {_counted(pooled['misses'])} |")
    lines += ["", "In brackets: exact (Clopper–Pearson) 95 % interval of a count at a threshold fixed before the "
              "test; the promise holds where it is not below the measured interval.", ""]
    return lines


def results_markdown(results: dict[str, Any]) -> str:
    header = "| category | " + " | ".join(METRIC_NAMES) + " |"
    lines = [
        f"# {results['model']} — {results['num_test_images']} test images",
        "",
        header,
        "|" + "---|" * (len(METRIC_NAMES) + 1),
    ]
    rows = [(name, name, metrics) for name, metrics in results["categories"].items()]
    if len(rows) > 1:
        rows.append(("**mean**", "mean", results["mean"]))
    intervals = results.get("intervals") or {}
    if results.get("geometry"):
        lines[1:1] = ["", geometry_sentence(results["geometry"])]
    for label, key, metrics in rows:
        found = intervals.get(key, {})
        lines.append(f"| {label} | " + " | ".join(_fmt(metrics.get(k), found.get(k)) for k in METRIC_NAMES) + " |")
    env = results["environment"]
    for name, why in results.get("undefined", {}).items():
        reasons = sorted(set(why.values()))
        lines.append(f"\n– {name}: {', '.join(why)} undefined ({'; '.join(reasons)}).")
    lines += [
        "",
        *([f"AUROC intervals: {results['interval_method']}."] if results.get("interval_method") else []),
        *_health_lines(results.get("health") or {}),
        f"Inference: {results['images_per_second']:.1f} images/s (model only, batch "
        f"{results['eval_batch_size']}), {results['images_per_second_end_to_end']:.1f} images/s end to end; "
        f"peak RSS {results['peak_rss_mib']:.0f} MiB"
        + (f", peak GPU {results['peak_gpu_mib']:.0f} MiB" if "peak_gpu_mib" in results else "")
        + ".",
        f"Machine: {env['device_name']}, torch {env['torch']}, commit {env['commit']}, {env['date']}.",
        "",
    ]
    if "thresholds" in results:  # results.json written before thresholds were reported has no such key
        lines += thresholds_markdown(results["thresholds"])
    return "\n".join(lines)
