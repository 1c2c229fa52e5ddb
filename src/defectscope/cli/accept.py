"""`defectscope accept RUN IMAGES…`: good parts the model flagged become normal, without fitting it again."""

from __future__ import annotations

import argparse

from defectscope.config import ConfigError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accept", help="take good parts the model flagged into what it calls normal (no refitting; "
                                      "patchcore, padim, mean_image)")
    p.add_argument("run_dir", metavar="RUN", help="a run folder, or its checkpoints/final")
    p.add_argument("images", nargs="+", metavar="IMAGES", help="image files or folders of them: good parts only")
    p.add_argument("--class-name", default=None, help="the parts' class, for a model with several")
    p.add_argument("--rescore", action="store_true",
                   help="score the run's held-out good images again with the updated model and set the threshold "
                        "from them (a run calibrated on a hold-out, its data where it was); default: keep the "
                        "stored held-out scores and threshold")
    p.add_argument("--output", default=None, metavar="DIR",
                   help="write the updated checkpoint to this new folder; default: replace the run's, keeping the old "
                        "one beside it as <checkpoint>.before-accept-<k>")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, overrides: list[str]) -> int:
    from defectscope.engine.accept import accept

    if overrides:
        raise ConfigError(f"accept: unknown arguments {overrides}")
    done = accept(args.run_dir, args.images, args.class_name, args.output, args.rescore)
    print(f"accepted {len(done.images)} image{'s' if len(done.images) != 1 else ''} as good")
    for name, (was, now) in done.changes.items():
        print(f"  {name.replace('_', ' ')}: {was:.0f} → {now:.0f}")
    threshold = None if done.new is None else done.new.image.threshold
    for path, was, now in zip(done.images, done.scores_before, done.scores_after, strict=True):
        print(f"  {path}: score {was:.6g} → {now:.6g}" + ("" if threshold is None else
              f" ({'above' if now > threshold.value else 'at or below'} the threshold {threshold.value:.6g})"))
    if done.old is not None and done.new is not None:
        pairs = [("all classes" if done.new.classes else "image", done.old.image, done.new.image),
                 *((n, done.old.classes[n], done.new.classes[n]) for n in done.new.classes if n in done.old.classes)]
        for name, before, after in pairs:
            b, a = before.threshold, after.threshold
            how = ("set again from its held-out good parts, scored by the updated model" if done.rescored else
                   "kept: its held-out good parts were scored before acceptance")
            print(f"  {name} threshold {b.value:.6g} → {a.value:.6g} ({how}); flags at most {100 * a.bound:.3g} % "
                  f"of good parts like those {a.n}")
    print(f"written: {done.target}")
    if done.kept is not None:
        print(f"the checkpoint as it was: {done.kept} (copy it back to undo)")
    return 0
