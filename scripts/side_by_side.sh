#!/usr/bin/env bash
# AMT (the `cpu` preset) against its baseline on this CPU: the same pre-rendered synthetic data, the same wall time,
# evaluated on a held-out synthetic split (another seed). Prints a Markdown table (MPJPE, PA-MPJPE, AUC, prediction
# std) and writes it to OUT/table.md.
#
#   scripts/side_by_side.sh [OUT]                 # the README's 20-minute comparison (default OUT=runs/side_by_side)
#   MINUTES=1 TRAIN_NUM=200 VAL_NUM=64 scripts/side_by_side.sh /tmp/sbs   # a quick check of the whole pipeline
#
# Both models train through the same trainer and stage plan; with trainer.stage_by_time each stage gets its share
# (the seed's 20/50/30) of the wall-time budget, and --max-time stops both at the same time. The data is rendered
# once beforehand (`amt-core synth`), so neither model waits on the renderer.
set -euo pipefail

OUT=${1:-runs/side_by_side}
MINUTES=${MINUTES:-20}
TRAIN_NUM=${TRAIN_NUM:-4000}
VAL_NUM=${VAL_NUM:-500}
SIZE=${SIZE:-128}
WORKERS=${WORKERS:-2}
BATCH=${BATCH:-16}
AMT=${AMT_CORE:-"python -m amt_core"}

mkdir -p "$OUT"
# `synth` resumes a partly written folder and leaves a complete one as it is.
$AMT synth --out "$OUT/data/train" --num "$TRAIN_NUM" --seed 0 --size "$SIZE" --workers "$WORKERS"
$AMT synth --out "$OUT/data/test" --num "$VAL_NUM" --seed 1 --size "$SIZE" --workers "$WORKERS"
TRAIN="synth:$OUT/data/train"
TEST="synth:$OUT/data/test"

# Both models train at the same time, one core and one torch thread each (THREADS), so machine load that comes
# and goes during the run falls on both alike. PARALLEL=0 trains them one after the other instead.
PARALLEL=${PARALLEL:-1}
THREADS=${THREADS:-1}
train_and_eval() {
  local MODEL=$1 MODEL_FLAG=()
  [ "$MODEL" = amt ] || MODEL_FLAG=(--model baseline)
  if [ ! -f "$OUT/$MODEL.json" ]; then
    rm -rf "${OUT:?}/$MODEL"
    OMP_NUM_THREADS=$THREADS $AMT train --preset cpu "${MODEL_FLAG[@]}" --data "$TRAIN" --val-data "$TEST" \
      --run-dir "$OUT/$MODEL" --batch-size "$BATCH" --max-time "$MINUTES" --set trainer.stage_by_time=true \
      --set trainer.eval_every=0 --set trainer.num_workers=1 > "$OUT/$MODEL.log" 2>&1
    OMP_NUM_THREADS=$THREADS $AMT eval --ckpt "$OUT/$MODEL" --data "$TEST" --json "$OUT/$MODEL.json" >> "$OUT/$MODEL.log" 2>&1
  fi
}
if [ "$PARALLEL" = 1 ]; then
  train_and_eval amt & amt_pid=$!
  train_and_eval baseline & baseline_pid=$!
  wait $amt_pid && wait $baseline_pid
else
  train_and_eval amt
  train_and_eval baseline
fi

python - "$OUT" "$MINUTES" <<'PY' | tee "$OUT/table.md"
import json, sys
from pathlib import Path
out, minutes = Path(sys.argv[1]), sys.argv[2]
rows = {m: json.loads((out / f"{m}.json").read_text()) for m in ("amt", "baseline")}
steps = {}
for m in rows:
    events = [json.loads(l) for l in (out / m / "events.jsonl").read_text().splitlines() if l.strip()]
    steps[m] = max(e["step"] for e in events)
print(f"| model ({minutes} min, same data) | steps | MPJPE mm | PA-MPJPE mm | AUC 0-50 | pred std mm | gt std mm |")
print("|---|---|---|---|---|---|---|")
for m, r in rows.items():
    print(f"| {r['model']} | {steps[m]} | {r['mpjpe_mm']:.1f} | {r['pa_mpjpe_mm']:.1f} | {r['auc_0_50']:.3f} "
          f"| {r['pred_std_mm']:.1f} | {r['gt_std_mm']:.1f} |")
a, b = rows["amt"], rows["baseline"]
ratio = a["mpjpe_mm"] / b["mpjpe_mm"]
spread = a["pred_std_mm"] / a["gt_std_mm"]
print()
print(f"AMT / baseline MPJPE: {ratio:.2f} (goal <= 0.7: {'met' if ratio <= 0.7 else 'not met'}); "
      f"AMT pred std / gt std: {spread:.2f} (goal 0.5-1.5: {'met' if 0.5 <= spread <= 1.5 else 'not met'}); "
      f"held-out samples: {a['num_samples']}")
PY
