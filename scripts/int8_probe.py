"""Int8 backbone in onnxruntime: speed and accuracy of a cell's exported graph with its convolutions quantised.

    python scripts/int8_probe.py runs/benchmarks/speed/cells/patchcore_1.mtsd.multi_class.all.s0 [--calibration 64]

Quantises only the Conv nodes of the cell's `model.onnx` (onnxruntime's static quantiser, QDQ,
weights int8 per channel, activations uint8), so the backbone runs in int8 while the bank search,
the Gaussians and the map stay in float32: quantising the distance products would round away the
very differences the score reads. The activation ranges come from `--calibration` good *training*
images of the cell's config (never a test image), brought to the working size as scoring does.
Then both graphs score every test image of the cell (its scores.csv, files read from disk) and
the script prints, for each: images/s end to end at batch 1, image AUROC and the share of defects
caught at 1 % false alarms on the test ROC (bootstrap intervals), the largest score difference
between the two graphs, and how many test images change side of the cell's own threshold.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np


def calibration_images(cell: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` good training images of the cell's config (train and held-out, never test), a seeded sample."""
    from defectscope.config import config_from_yaml
    from defectscope.data.dataset import build_datasets

    cfg = config_from_yaml((cell / "config.yaml").read_text(), str(cell / "config.yaml"))
    bundle = build_datasets(cfg.data)
    records = [*bundle.train.records, *bundle.validation.records]  # type: ignore[union-attr]
    chosen = np.random.default_rng(seed).choice(len(records), size=min(count, len(records)), replace=False)
    return [Path(records[i].image_path) for i in sorted(chosen)]


def quantise(fp32: Path, int8: Path, images: list[Path], method: str, keep_depthwise: bool) -> None:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from defectscope.data.image_io import load_image_array
    from defectscope.export.runtime import OnnxDetector
    from defectscope.scoring.detection import image_array
    from defectscope.scoring.resize import fit_array

    detector = OnnxDetector(fp32, batch_size=1)
    viewing = detector.viewing
    inputs = [i.name for i in detector.session.get_inputs()]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.left = list(images)

        def get_next(self) -> dict[str, np.ndarray] | None:
            if not self.left:
                return None
            array = image_array(load_image_array(str(self.left.pop())), 0)
            canvas = fit_array(array, viewing.size or array.shape[:2], viewing.resize)[0]
            feeds = {inputs[0]: canvas[None].astype(np.float32)}
            if len(inputs) > 1:
                feeds[inputs[1]] = np.zeros(1, np.int64)
            return feeds

    prepared = int8.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(prepared), skip_symbolic_shape=True)
    import onnx
    from onnxruntime.quantization import CalibrationMethod

    graph = onnx.load(str(prepared), load_external_data=False).graph
    # depthwise convolutions (one filter per channel) lose the most to int8 ranges; they stay float32
    depthwise = [n.name for n in graph.node if n.op_type == "Conv" and any(
        a.name == "group" and a.i > 1 for a in n.attribute)] if keep_depthwise else []
    quantize_static(str(prepared), str(int8), Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=depthwise, calibrate_method=CalibrationMethod[method])
    prepared.unlink()
    # the quantiser rewrites the model's metadata; the detector reads its calibration from there

    source, quantised = onnx.load(str(fp32), load_external_data=False), onnx.load(str(int8))
    del quantised.metadata_props[:]
    quantised.metadata_props.extend(source.metadata_props)
    onnx.save(quantised, str(int8))


def score_all(graph: Path, rows: list[dict], threads: int) -> tuple[np.ndarray, float]:
    from defectscope.data.image_io import load_image_array
    from defectscope.export.runtime import OnnxDetector

    detector = OnnxDetector(graph, batch_size=1, threads=threads)
    detector.score([load_image_array(rows[0]["path"])], rows[0]["class"])  # warm-up
    scores = []
    began = time.perf_counter()
    for row in rows:
        scores.append(detector.score([load_image_array(row["path"])], row["class"])[0].score)
    return np.array(scores), len(rows) / (time.perf_counter() - began)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("cell", type=Path)
    p.add_argument("--calibration", type=int, default=64, help="good training images for the activation ranges")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--method", default="MinMax", choices=["MinMax", "Percentile", "Entropy"],
                   help="how the activation ranges are read off the calibration images")
    p.add_argument("--keep-depthwise", action="store_true", help="leave depthwise convolutions in float32")
    args = p.parse_args()
    from defectscope.metrics.auroc import image_auroc
    from defectscope.metrics.bootstrap import image_auroc_interval
    from defectscope.metrics.operating_point import catch_rate_at, catch_rate_interval

    fp32, int8 = args.cell / "model.onnx", args.cell / "model.int8.onnx"
    began = time.perf_counter()
    quantise(fp32, int8, calibration_images(args.cell, args.calibration), args.method, args.keep_depthwise)
    print(f"{int8}: quantised in {time.perf_counter() - began:.0f} s on {args.calibration} good training images, "
          f"{int8.stat().st_size / 2**20:.1f} MiB (float32 graph {fp32.stat().st_size / 2**20:.1f} MiB)")
    rows = list(csv.DictReader(open(args.cell / "scores.csv")))
    labels = np.array([int(r["label"]) for r in rows])
    classes = np.array([r["class"] for r in rows])
    calibration = json.loads((args.cell / "results.json").read_text())["calibration"]
    threshold = np.array([calibration.get("classes", {}).get(c, calibration["image"])["threshold"]["value"]
                          for c in classes])
    print("| graph | images/s (batch 1) | image AUROC | caught at 1 % FA (test ROC) |\n|---|---|---|---|")
    table = {}
    for name, graph in (("float32", fp32), ("int8 backbone", int8)):
        scores, speed = score_all(graph, rows, args.threads)
        table[name] = scores
        cells = []
        for c in dict.fromkeys(classes):
            own = classes == c
            low, high = image_auroc_interval(scores[own], labels[own])
            c_low, c_high = catch_rate_interval(scores[own], labels[own], 0.01)
            cells.append(f"{c}: {image_auroc(scores[own], labels[own]):.3f} ({low:.3f}–{high:.3f}) | "
                         f"{catch_rate_at(scores[own], labels[own], 0.01):.3f} ({c_low:.3f}–{c_high:.3f})")
        for i, text in enumerate(cells):
            print(f"| {name if i == 0 else ''} | {f'{speed:.1f}' if i == 0 else ''} | {text} |")
    diff = np.abs(table["float32"] - table["int8 backbone"])
    stored = np.array([float(r["score"]) for r in rows])
    relative = np.max(diff / np.abs(stored))
    print(f"largest |score difference| int8 vs float32: {diff.max():.3g} (relative {relative:.3g});"
          f" float32 graph vs the cell's stored scores: {np.abs(table['float32'] - stored).max():.2g}")
    moved = int(np.sum((table["float32"] > threshold) != (table["int8 backbone"] > threshold)))
    print(f"test images on the other side of the cell's threshold with int8: {moved} of {len(rows)}")

if __name__ == "__main__":
    main()
