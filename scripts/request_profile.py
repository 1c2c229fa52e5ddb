"""Where a service request's time goes, stage by stage, with no HTTP and no other client.

    python scripts/request_profile.py runs/part/checkpoints/final [--repeats 3] [--no-overlay | --overlay-format jpeg]
    python scripts/request_profile.py runs/part/checkpoints/final --images '*/Imgs/*.png'   # blank frames

Runs the stages `/predict` runs for one upload, in the service's own functions, on the demo MTSD
tiles (the ones scripts/load_test.py sends), one image at a time on one thread: the header probe
and decode (`decode_upload`), the detector's `score` (resize, network, search, map back), the
heatmap overlay as PNG (or JPEG) and its base64, and the JSON answer. Prints the median and 90th percentile
of each stage over every tile and repeat, and what they add up to: the floor of a request's
latency, and so of p99 at one client, before HTTP and the client's own share of the cores.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO = REPO_ROOT / "demo" / "mtsd_mini"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="a checkpoint folder (the one the service would load)")
    p.add_argument("--repeats", type=int, default=3, help="passes over the demo tiles")
    answer = p.add_mutually_exclusive_group()
    answer.add_argument("--no-overlay", action="store_true", help="time the answer without the heatmap")
    p.add_argument("--images", default="*/Imgs/*.jpg",
                   help="glob under demo/mtsd_mini (default: the tiles; '*/Imgs/*.png' are their masks, "
                        "black frames with a white blot: parts unlike every good one)")
    p.add_argument("--feature-runtime", choices=["auto", "torch", "onnxruntime"], default="auto",
                   help="the backbone in onnxruntime (auto: where installed, as serve does) or torch")
    answer.add_argument("--overlay-format", choices=["png", "jpeg"], default="png", help="the heatmap's format")
    p.add_argument("--class-name", default=None, help="the class to score as, where the model knows several")
    args = p.parse_args()

    import torch

    from defectscope.engine.detector import Detector
    from defectscope.serve.images import decode_upload, overlay_bytes, probe_upload
    from defectscope.serve.settings import ServeSettings

    torch.set_num_threads(2)
    files = sorted(DEMO.glob(args.images))
    if not files:
        raise SystemExit(f"no demo images under {DEMO}")
    settings = ServeSettings()
    detector = Detector.from_checkpoint(args.checkpoint, batch_size=1, feature_runtime=args.feature_runtime)
    class_name = args.class_name
    if class_name is None and len(detector.class_names) > 1:
        raise SystemExit(f"the model knows the classes {detector.class_names}: pass --class-name")
    uploads = [f.read_bytes() for f in files]
    detector.score([decode_upload(uploads[0], "warm-up", settings.max_image_pixels)], class_name)

    stages: dict[str, list[float]] = {"decode": [], "score": [], "overlay": [], "json": []}
    for _ in range(args.repeats):
        for name, data in zip(files, uploads, strict=True):
            t0 = time.perf_counter()
            probe_upload(data, name.name, settings.max_image_pixels)
            image = decode_upload(data, name.name, settings.max_image_pixels)
            t1 = time.perf_counter()
            detection = detector.score([image], class_name)[0]
            t2 = time.perf_counter()
            png = ""
            if not args.no_overlay:
                high = float(detection.anomaly_map.max())  # the colour scale's top: costs the same as any
                png = base64.b64encode(overlay_bytes(image, detection.anomaly_map, high,
                                                     settings.max_overlay_side, args.overlay_format)).decode()
            t3 = time.perf_counter()
            json.dumps({"score": detection.score, "defective": detection.defective, "overlay": png})
            t4 = time.perf_counter()
            for stage, seconds in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                stages[stage].append(seconds * 1000)

    total = np.sum([stages[s] for s in stages], axis=0)
    print(f"{len(files)} images ({args.images}) x {args.repeats}, one at a time, "
          f"torch {torch.get_num_threads()} threads, features in {detector.info()['feature_runtime']}, "
          f"model {detector.model_name} ({args.checkpoint}), "
          f"overlay {'off' if args.no_overlay else args.overlay_format}")
    print("| stage | median ms | p90 ms |")
    print("|---|---|---|")
    for stage, values in [*stages.items(), ("total", list(total))]:
        print(f"| {stage} | {statistics.median(values):.1f} | {np.percentile(values, 90):.1f} |")


if __name__ == "__main__":
    main()
