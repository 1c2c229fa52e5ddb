"""Where PVQAE's inference time goes: `python scripts/profile_pvqae.py CONFIG [--batch 16]`.

Times each stage of `PVQAE.explain` on random images (patch features for target `features`,
encoder, routing, budget prior, quantise + decode, scoring), so a slow configuration says which part to shrink.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from defectscope.config import load_config
from defectscope.layers.scoring import image_score
from defectscope.models import create_model
from defectscope.models.pvqae.anomaly_map import anomaly_map, budget_score, pixel_budget
from defectscope.models.pvqae.model import PVQAE
from defectscope.models.pvqae.routing import one_hot_levels


def _timed(fn: Callable[[], object], iterations: int) -> tuple[float, object]:
    fn()  # warm-up
    began = time.perf_counter()
    for _ in range(iterations):
        out = fn()
    return (time.perf_counter() - began) / iterations, out


@torch.no_grad()
def profile_parts(model: PVQAE, batch: int, size: int, iterations: int = 3) -> dict[str, float]:
    """Seconds per image for each stage, and the images/s of the whole predict."""
    model.eval()
    images = torch.rand(batch, 3, size, size)
    classes = torch.zeros(batch, dtype=torch.long)
    out: dict[str, float] = {}
    t, target = _timed(lambda: model.target(images), iterations)
    if model.features is not None:
        out["patch features (frozen backbone)"] = t
    t, features = _timed(lambda: model.encoder(target), iterations)
    out["encoder"] = t
    t, routing = _timed(lambda: model.hard_routing(features, images), iterations)
    out["routing"] = t
    probs = None
    scores = routing.scores
    if model.prior is not None:
        t, probs = _timed(lambda: model.prior.predict_each_masked(routing.levels, classes), iterations)
        out["budget prior"] = t
        scores = one_hot_levels(probs.argmax(1), model.num_levels)
    t, rec = _timed(lambda: model.reconstruct(features, scores).output, iterations)
    out["quantise + decode"] = t

    def score() -> torch.Tensor:
        budget = pixel_budget(budget_score(routing.levels, probs), images.shape[-2:]) if probs is not None else None
        maps = anomaly_map(budget, model.rec_score(images, target, rec)[0], model.map_score,
                           model.config.smoothing_sigma)
        return image_score(maps)

    out["scoring"] = _timed(score, iterations)[0]
    per_image = {k: v / batch for k, v in out.items()}
    whole, _ = _timed(lambda: model.predict(images, classes), iterations)
    per_image["images_per_second"] = batch / whole
    return per_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("config", help="a PVQAE run config, e.g. configs/pvqae/small.yaml")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--iterations", type=int, default=3)
    args, overrides = parser.parse_known_args()  # the rest: --model.key value, as for `defectscope train`
    cfg = load_config(args.config, overrides)
    model = create_model(cfg.model_name, cfg.model, cfg.data.image_size)
    if not isinstance(model, PVQAE):
        raise SystemExit(f"{args.config}: not a PVQAE config")
    parts = profile_parts(model, args.batch, cfg.data.image_size, args.iterations)
    print(json.dumps({"config": args.config, "batch": args.batch, "threads": torch.get_num_threads(),
                      "ms_per_image": {k: round(v * 1e3, 2) for k, v in parts.items() if k != "images_per_second"},
                      "images_per_second": round(parts["images_per_second"], 1)}, indent=2))


if __name__ == "__main__":
    main()
