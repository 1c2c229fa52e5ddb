"""`defectscope fit GOOD_DIR`: a detector from a folder of good parts, calibrated, with no YAML to write."""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

from defectscope.cli.common import check_false_alarm_rate
from defectscope.config import ConfigError, RunConfig

# "auto" and engine.feature_choice.SETTINGS, written out so that parsing imports no torch (a test checks)
FEATURES = ("auto", "shipped", "with_last", "first_three", "sparse_bank")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit", help="fit a detector to a folder of good parts (no YAML); every image is a good part")
    p.add_argument("good_dir", help="folder of images of good parts (searched one level: the images in it)")
    p.add_argument("--output", default=None, metavar="RUN", help="run folder (default runs/<model>_<folder name>)")
    p.add_argument("--model", default=None,
                   help="patchcore (default: the most accurate here at 1 %% false alarms), padim, mean_image, or a "
                        "trained model (pvqae, vitae, fader, ae_ssim, vq_e; minutes to hours on a CPU)")
    p.add_argument("--defects", default=None, metavar="DIR",
                   help="a few known-bad parts: how many the threshold catches is printed (a validation figure, "
                        "not a test result: a handful of parts says little)")
    p.add_argument("--false-alarm-rate", type=float, default=0.01, metavar="R",
                   help="share of good parts the threshold may flag (default %(default)g); change it later, without "
                        "fitting again, with `defectscope threshold RUN --false-alarm-rate R`")
    p.add_argument("--features", choices=FEATURES, default=None,
                   help="PatchCore's patch setting. auto (the default): fit once per setting and keep the one that "
                        "catches most synthetic defects pasted into held-out good parts (no defect images needed; "
                        "the candidates and their figures stay in RUN/feature_choice; kept at shipped below about "
                        "100 good parts, or where model.backbone.taps is given), then the chosen setting on a "
                        "working size 1.5x each way, kept where it catches at least one more held-out part per kind "
                        "(finer patches for small defects, about 2.25x the time per part; not tried where "
                        "data.image_size is given; engine.feature_choice.FINER_PIXELS). shipped: the last blocks at "
                        "stride 8 and 16; with_last: and at stride 32 (textures); first_three: a stride-4 grid; "
                        "sparse_bank: a tenth of the bank")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier run in the output folder")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine import run as run_engine
    from defectscope.engine.presets import DEFAULT_MODEL, folder_config

    check_false_alarm_rate(args.false_alarm_rate)
    cfg = folder_config(args.good_dir, args.model or DEFAULT_MODEL, args.output,
                        ["--eval.false_alarm_rate", str(args.false_alarm_rate), *overrides])
    cfg = choose_patch_setting(cfg, args)
    result = run_engine(cfg, overwrite=args.overwrite, evaluate_test=False)
    checkpoint = result.checkpoint
    from defectscope.engine.detector import Detector

    detector = Detector.from_checkpoint(checkpoint)
    promise = detector.promise()
    if promise:
        print(f"{checkpoint}: {cfg.model_name} fitted to the good parts in {args.good_dir}; its threshold flags at "
              f"most {100 * promise['false_alarm_bound']:.3g} % of good parts like these "
              f"(stated {100 * promise['false_alarm_rate']:.3g} %, from {promise['held_out_normals']} good parts "
              "it was not fitted on)")
    highest = highest_good_lines(Path(cfg.output_dir), promise.get("image_threshold") if promise else None,
                                 promise.get("false_alarm_rate") if promise else None)
    if highest:
        print(highest)
    if args.defects:
        print(known_bad_line(detector, Path(args.defects)))
    print(f"next: defectscope predict {checkpoint} NEW_IMAGES/  ·  defectscope serve {checkpoint}  ·  "
          f"defectscope threshold {cfg.output_dir} --false-alarm-rate 0.05", file=sys.stderr)
    return 0


def choose_patch_setting(cfg: RunConfig, args: argparse.Namespace) -> RunConfig:
    """cfg with PatchCore's patch setting: the one asked for, or the one the good parts choose."""
    import dataclasses
    import shutil

    from defectscope.engine.feature_choice import (
        CHOICE_FOLDER,
        apply_setting,
        candidates,
        choose_features,
        patchcore_model,
    )
    from defectscope.engine.run import MARKER, check_output_dir, mark_run_dir, run_dir_refusal
    from defectscope.models.patchcore.config import PatchCoreConfig

    features = args.features
    if features is None:  # the default: choose, unless the model is not PatchCore or its taps are given
        if not isinstance(cfg.model, PatchCoreConfig) or cfg.model.backbone.taps:
            return cfg
        features = "auto"
    if features == "auto":
        candidates(cfg)  # a config that cannot choose is refused before any folder is made
    else:
        cfg = dataclasses.replace(cfg, model=apply_setting(patchcore_model(cfg), features))
    run_dir = Path(cfg.output_dir)
    refusal = run_dir_refusal(run_dir, args.overwrite)  # now, not after the candidates' fits
    previous = run_dir / CHOICE_FOLDER
    if refusal is None and previous.exists():
        if not args.overwrite:
            refusal = ConfigError(f"{previous}: holds an earlier choice of patch setting (an interrupted fit?); "
                                  "choose another --output, or pass --overwrite to delete it and start again")
        elif not (run_dir / MARKER).is_file():
            refusal = ConfigError(f"{previous}: no {MARKER} file in {run_dir} says defectscope wrote it, so "
                                  "--overwrite leaves it alone; choose another --output, or delete it yourself")
    if refusal is not None:
        raise refusal
    if previous.exists():  # --overwrite: no earlier choice.json may sit beside a run with another setting
        shutil.rmtree(previous)
    if features != "auto":
        return cfg
    check_output_dir(run_dir)
    mark_run_dir(run_dir)  # an interrupted choice can then be started again with --overwrite
    choice = choose_features(cfg, previous, args.overwrite)
    print(f"defectscope: {choice.describe()}", file=sys.stderr)
    return dataclasses.replace(cfg, model=choice.model,
                               data=dataclasses.replace(cfg.data, image_size=choice.image_size))


HIGHEST_SHOWN = 5
MOST_SHOWN = 12  # with every part above the threshold, when more than HIGHEST_SHOWN lie above it


def highest_good_lines(run_dir: Path, threshold: float | None, rate: float | None = None) -> str:
    """The good parts that scored highest in calibration, to look at: one defective part filed among
    the good ones raises the threshold for every part. With the threshold and its rate, also what is at
    stake: where the threshold would fall without the parts above it."""
    from defectscope.engine.calibrate import HELD_OUT_SCORES

    path = run_dir / HELD_OUT_SCORES
    if not path.is_file():
        return ""
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        return ""
    scores = [float(r["score"]) for r in rows]
    # the CSV keeps 6 significant digits: a score within that of the threshold is the threshold's own part
    above = 0 if threshold is None else sum(score > threshold + 1e-5 * abs(threshold) for score in scores)
    against = "" if threshold is None else f"; the threshold is {threshold:.4g}"
    lines = [f"the good parts that scored highest when they were held out ({len(rows)} in {path}{against}); "
             "look at them: a defective part among the good ones raises the threshold for every part"]
    shown = min(max(HIGHEST_SHOWN, above + 1), MOST_SHOWN)
    lines += [f"  {score:.4g}  {r['path']}" for score, r in zip(scores[:shown], rows[:shown], strict=True)]
    one_class = len({r["class"] for r in rows}) == 1  # a model with a threshold per class sets each from its parts
    if threshold is not None and rate is not None and one_class and 0 < above < min(MOST_SHOWN, len(rows)):
        lines += _without_those_above(scores, above, rate)
    return "\n".join(lines)


def _without_those_above(held_out: list[float], above: int, rate: float) -> list[str]:
    """Where the same rule puts the threshold without the `above` highest held-out scores."""
    import warnings

    import numpy as np

    from defectscope.scoring.calibration import conformal_rank, conformal_threshold

    scores = np.sort(held_out)
    place = len(scores) + 1 - min(conformal_rank(len(scores), rate), len(scores))
    with warnings.catch_warnings():  # fewer parts may fall short of the rate: the bound printed says so
        warnings.simplefilter("ignore")
        again = conformal_threshold(scores[: len(scores) - above], rate)
    parts = f"the {above} parts above it are" if above > 1 else "the part above it is"
    return [f"it is the {_ordinal(place)} highest of {len(scores)} (the rule for {100 * rate:.3g} %); if {parts} "
            f"defective, move {'them' if above > 1 else 'it'} out of the folder and fit again: the threshold would "
            f"fall to about {again.value:.4g} (≤ {100 * again.bound:.2g} %), before the new fit moves the scores "
            "a little"]


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def known_bad_line(detector: object, folder: Path) -> str:
    """How many of a folder of known-bad parts the threshold flags, with its exact 95 % interval."""
    from defectscope.data.discovery import collect_inputs
    from defectscope.data.image_io import load_image_array
    from defectscope.metrics.operating_point import binomial_interval

    if not folder.is_dir():
        raise ConfigError(f"--defects {folder}: not a folder of images")
    images, _ = collect_inputs([str(folder)])
    if not images:
        raise ConfigError(f"--defects {folder}: no images in it")
    flagged = sum(bool(d.defective) for start in range(0, len(images), 8)
                  for d in detector.score([load_image_array(i.path) for i in images[start:start + 8]]))  # type: ignore[attr-defined]
    low, high = binomial_interval(flagged, len(images))
    return (f"known-bad parts in {folder}: {flagged} of {len(images)} flagged at the threshold "
            f"(95 % interval {100 * low:.0f}–{100 * high:.0f} %; a validation figure on the parts you gave, "
            "not a test result)")
