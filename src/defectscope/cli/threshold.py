"""`defectscope threshold RUN --false-alarm-rate R`: move a fitted model's threshold without fitting it again."""

from __future__ import annotations

import argparse

from defectscope.cli.common import check_false_alarm_rate
from defectscope.config import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("threshold", help="set the image threshold again from the held-out scores (no refitting)")
    p.add_argument("run_dir", metavar="RUN", help="a run folder, or its checkpoints/final")
    choice = p.add_mutually_exclusive_group(required=True)
    choice.add_argument("--false-alarm-rate", type=float, metavar="R",
                        help="flag at most this share of good parts like the held-out ones")
    choice.add_argument("--score", type=float, metavar="S",
                        help="this raw score as the threshold; the promise it gives is read off the held-out scores")
    p.add_argument("--class-name", default=None, help="with --score on a model with a threshold per class: which one")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="write the re-thresholded checkpoint here instead of replacing the run's")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine.rethreshold import rethreshold

    if overrides:
        raise ConfigError(f"threshold: unknown arguments {overrides}")
    check_false_alarm_rate(args.false_alarm_rate)
    old, new, target = rethreshold(args.run_dir, args.false_alarm_rate, args.score, args.class_name, args.output)
    for name, before, after in [("all classes" if new.classes else "image", old.image, new.image),
                                *((n, old.classes[n], new.classes[n]) for n in new.classes)]:
        b, a = before.threshold, after.threshold
        print(f"{name}: threshold {b.value:.6g} → {a.value:.6g}; flags at most {100 * b.bound:.3g} % → "
              f"{100 * a.bound:.3g} % of good parts like the {a.n} held-out ones "
              f"(stated {100 * a.false_alarm_rate:.3g} %)")
    print(f"written: {target} (results.json of the run still shows the old threshold; `defectscope test {target}` "
          "measures the new one)")
    return 0
