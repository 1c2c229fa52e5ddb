"""The ladder's verdict per working size beside what the test split says, one markdown row per size.

    python scripts/size_ladder_table.py runs/size_ladder/pill runs/size_ladder/pill_test

LADDER holds scripts/size_ladder.py's ladder.json; TESTED holds `defectscope test` of each of its
runs, one folder per pixel budget (OUTPUT/<pixels>). The ladder reads only good training images;
the other columns read the test labels, to judge the ladder, never to choose by.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from calibration_table import counted, pct

from defectscope.geometry import as_hw


def main(ladder: str, tested: str) -> None:
    found = json.loads(Path(ladder, "ladder.json").read_text())
    print("| working size | ladder: share caught (held-out n) | image AUROC | caught at 1 % (test ROC) "
          "| false alarms at the hold-out threshold (promised ≤) | caught at that threshold | AU-PRO |")
    print("|---|---|---|---|---|---|---|")
    for pixels, entry in found.items():
        results = json.loads(Path(tested, pixels, "results.json").read_text())
        for name, metrics in results["categories"].items():
            low, high = results["intervals"][name]["catch_1pct"]
            auroc_low, auroc_high = results["intervals"][name]["image_auroc"]
            threshold = results["thresholds"]["categories"][name]
            height, width = as_hw(entry["size"])
            print(f"| {height} × {width} | {entry['caught']:.3f} ({int(entry['held_out'])}) "
                  f"| {metrics['image_auroc']:.3f} ({auroc_low:.3f}–{auroc_high:.3f}) "
                  f"| {pct(metrics['catch_1pct'])} ({pct(low)}–{pct(high)}) "
                  f"| {counted(threshold['false_alarms'])} (≤ {pct(threshold['false_alarm_bound'])} %) "
                  f"| {counted(threshold['caught'])} | {metrics['aupro']:.3f} |")


if __name__ == "__main__":
    main(*sys.argv[1:3])
