"""What `defectscope accept` does on a line whose good parts changed: false alarms and catches, before and after.

    python scripts/accept_check.py runs/benchmarks/calibration/cells/padim_random.mtsd.multi_class.all.s0 \
        --shift brighter_15pct --accept 5 --work /tmp/accept_check

Takes the run's good test images changed as a line changes (scripts/shifted_normals.py's shifts),
scores them with the run's checkpoint, accepts the first k that are flagged (by name: the first
false alarms an operator would mark good), and scores the *other* shifted good images and the
run's defective test images again with the updated checkpoint. The accepted images are never
counted: the figures are on parts the update did not see.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from shifted_normals import SHIFTS, flagged_rows, normal_test_images, write_set  # noqa: E402

from defectscope.engine.accept import accept  # noqa: E402
from defectscope.metrics.operating_point import binomial_interval  # noqa: E402


def defect_images(run: Path) -> list[Path]:
    with (run / "scores.csv").open(newline="") as f:
        return [Path(r["path"]) for r in csv.DictReader(f) if r["label"] == "1"]


def share(flags: list[bool]) -> str:
    low, high = binomial_interval(sum(flags), len(flags))
    return f"{sum(flags)}/{len(flags)} ({100 * sum(flags) / len(flags):.1f} %, {100 * low:.1f}–{100 * high:.1f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--shift", default="brighter_15pct", choices=sorted(SHIFTS))
    parser.add_argument("--accept", type=int, default=5, help="how many flagged good images to accept (k)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/accept_check"))
    parser.add_argument("--class-name", default=None,
                        help="for a multi-class MVTec run: which class's images (<class>/test/<kind>/<file>)")
    args = parser.parse_args()
    checkpoint = args.run / "checkpoints" / "final"
    goods, defects = normal_test_images(args.run), defect_images(args.run)
    if args.class_name:
        goods = [p for p in goods if p.parent.parent.parent.name == args.class_name]
        defects = [p for p in defects if p.parent.parent.parent.name == args.class_name]
    shutil.rmtree(args.work / "accepted", ignore_errors=True)  # this script's own earlier output; good/ and defect/
    # are rewritten by write_set, out/ by predict --overwrite: nothing else under --work is touched
    write_set(goods, args.work / "good", SHIFTS[args.shift])
    write_set(defects, args.work / "defect", SHIFTS["unchanged"])

    good_before = flagged_rows(checkpoint, args.work / "good", args.work / "out", args.class_name)
    defect_before = flagged_rows(checkpoint, args.work / "defect", args.work / "out", args.class_name)
    chosen = sorted(p for p, flag in good_before.items() if flag)[: args.accept]
    if not chosen:
        print(f"{args.shift}: no good image flagged ({share(list(good_before.values()))}); nothing to accept")
        return
    updated = args.work / "accepted"
    done = accept(checkpoint, [args.work / "good" / name for name in chosen], args.class_name, output=updated)
    good_after = flagged_rows(updated, args.work / "good", args.work / "out", args.class_name)
    defect_after = flagged_rows(updated, args.work / "defect", args.work / "out", args.class_name)
    rest = [name for name in good_before if name not in chosen]
    changes = ", ".join(f"{k} {a:.0f} → {b:.0f}" for k, (a, b) in done.changes.items())
    print(f"run {args.run.name}; shift {args.shift}; accepted {len(chosen)} flagged good images ({changes})")
    print(f"  false alarms on the other {len(rest)} shifted good images: "
          f"{share([good_before[n] for n in rest])} → {share([good_after[n] for n in rest])}")
    print(f"  defects caught: {share(list(defect_before.values()))} → {share(list(defect_after.values()))}")


if __name__ == "__main__":
    main()
