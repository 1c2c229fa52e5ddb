"""What `defectscope fit GOOD_DIR` runs when the user writes no YAML: a model's settings for a folder of good parts.

The default detector is PatchCore, the most accurate here at the operating point on MTSD and
MVTec (docs/results/), on EfficientNet-Lite0 features, whose weights come with the `demo` and
`test` extras (the four packaged backbones are level within their intervals for PatchCore:
docs/results/backbones.md), searched with faiss's HNSW graph where the `faiss` extra is installed
(the exact search's image scores in a seventh of its time on a large bank, docs/results/speed.md),
exactly in torch otherwise; its patch setting (taps, bank share), then whether a working size 1.5×
as large each way catches more, are chosen by `fit --features auto` on the folder's own images
(engine.feature_choice). Every image in the folder is a good part: no
test split is made; the one-pass models calibrate by cross-fitting, so every image both trains the
shipped model and sets the threshold; a trained model holds 10 % out.
"""

from __future__ import annotations

from pathlib import Path

from defectscope.config import ConfigError, RunConfig, load_config
from defectscope.models import MODELS
from defectscope.models.patchcore.memory_bank import faiss_installed

DEFAULT_MODEL = "patchcore"
ONE_PASS = ("patchcore", "padim", "mean_image")
# the shipped configs' settings for these models (configs/<name>/mtsd.yaml), with a packaged backbone;
# a memory bank or Gaussians hold the good parts as they are, so no flips
AS_THEY_ARE = ["--data.batch_size", "16", "--data.augment", "{hflip: false, vflip: false}"]
PRESETS: dict[str, list[str]] = {
    "patchcore": ["--model.backbone.name", "efficientnet_lite0", *AS_THEY_ARE],
    "padim": ["--model.backbone.name", "efficientnet_lite0", *AS_THEY_ARE],
    "mean_image": ["--model.map", "zscore", *AS_THEY_ARE],
}


def folder_config(good_dir: str | Path, model: str = DEFAULT_MODEL, output: str | Path | None = None,
                  overrides: list[str] | None = None) -> RunConfig:
    """The resolved config for fitting `model` to every image in `good_dir`; `overrides` (`--a.b VALUE`) last."""
    if model not in MODELS:
        raise ConfigError(f"--model: unknown model {model!r} (one of {', '.join(sorted(MODELS))})")
    root = Path(good_dir)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder of good images")
    source = f"[{{layout: folder, root: '{root.resolve()}', good_dir: '.'}}]"
    # ten folds: each fold's model sees nine tenths of the parts, nearer the shipped one, so the
    # threshold errs less on the safe side at the same promise (MTSD 221 → 240 of 392 defects caught,
    # pill 47 → 55 of 141, no good part flagged either way; each part's backbone maps are computed
    # once and shared by the folds, so they cost the coreset selections mostly; docs/results/calibration.md)
    calibration = "{kind: cross_fit, folds: 10}" if model in ONE_PASS else "{kind: hold_out}"
    # HNSW where faiss is installed (the `faiss` extra), else the exact torch search: the same image
    # scores either way, so the choice is only speed; the resolved config records which ran
    search = ["--model.search", "hnsw" if faiss_installed() else "torch"] if model == "patchcore" else []
    args = ["--model.name", model, *PRESETS.get(model, []), *search,
            "--data.sources", source, "--data.split.test_fraction", "0", "--data.image_size", "auto",
            "--eval.calibration", calibration,
            "--output_dir", str(output or Path("runs") / f"{model}_{root.resolve().name}"),
            *(overrides or [])]
    return load_config(None, args)
