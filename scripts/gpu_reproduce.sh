#!/usr/bin/env bash
# The paper configs on MTSD, sized to finish in about 9 minutes on one H200 (bf16): PVQAE
# (configs/pvqae/paper.yaml) 4 min of autoencoder training + 3 prior epochs, then ViT-AE and FADeR
# (their paper configs, data switched to MTSD) 1.5 min each; every run evaluates itself. Results:
# $OUT/<model>/results.json and results.md, and $OUT/summary.md with one row per model.
#
#   bash scripts/gpu_reproduce.sh                       # on the GPU machine, from the repository root
#   SMOKE=1 bash scripts/gpu_reproduce.sh               # on a CPU: one step each on the demo tiles
#
# Nothing here is tuned on test labels: the budgets are wall-clock, the rest is the paper configs.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-runs/gpu_reproduce}
MTSD=${MTSD:-../shared/data/mtsd}
common=(--train.accelerator cuda --train.precision bf16-mixed --train.progress false --train.checkpoint_every 0)
pvqae_min=4 other_min=1.5
pvqae_smoke=()
if [[ "${SMOKE:-0}" == 1 ]]; then
    MTSD=demo/mtsd_demo
    common=(--train.accelerator cpu --train.precision 32-true --train.progress false --train.checkpoint_every 0
            --train.max_steps 1 --data.image_size 64 --data.batch_size 2 --data.num_workers 0
            --eval.bootstrap_resamples 100)
    pvqae_smoke=(--model.target.backbone.pretrained false)  # random LPIPS backbone: a smoke test needs no weights
    pvqae_min=0 other_min=0
fi
data=(--data.sources "[{layout: mtsd, root: '$MTSD'}]")
mkdir -p "$OUT"

defectscope train configs/pvqae/paper.yaml "${common[@]}" "${data[@]}" --train.max_minutes "$pvqae_min" \
    --model.prior.epochs "$([[ "${SMOKE:-0}" == 1 ]] && echo 1 || echo 3)" "${pvqae_smoke[@]}" \
    --output_dir "$OUT/pvqae" --overwrite
defectscope train configs/vitae/paper.yaml "${common[@]}" "${data[@]}" --train.max_minutes "$other_min" \
    --output_dir "$OUT/vitae" --overwrite
defectscope train configs/fader/paper.yaml "${common[@]}" "${data[@]}" --train.max_minutes "$other_min" \
    --model.inpaint_epochs 0 --model.fader.epochs 1 --output_dir "$OUT/fader" --overwrite

python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = ["| model | image AUROC (95 % CI) | pixel AUROC (95 % CI) | AU-PRO | train s | images/s | commit |",
        "|---|---|---|---|---|---|---|"]
for name in ("pvqae", "vitae", "fader"):
    r = json.loads((out / name / "results.json").read_text())
    m, ci = r["mean"], (r.get("intervals") or {}).get("mtsd", {})
    def cell(key):
        low, high = ci.get(key, [None, None])
        value = m.get(key)
        return "–" if value is None else f"{value:.3f}" + (f" ({low:.3f}–{high:.3f})" if low is not None else "")
    rows.append(f"| {name} | {cell('image_auroc')} | {cell('pixel_auroc')} | {m.get('aupro') or float('nan'):.3f} | "
                f"{r.get('train_seconds', '–')} | {r['images_per_second']:.1f} | {r['environment']['commit']} |")
(out / "summary.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
