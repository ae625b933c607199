#!/usr/bin/env bash
# AMT (the `cpu` preset) against its baseline and a plain CNN on this CPU: the same pre-rendered synthetic data, the
# same wall time, evaluated on a held-out synthetic split (another seed). Prints a Markdown table (MPJPE, PA-MPJPE,
# AUC, prediction std) with the trivial references on the same samples (the training data's mean pose, all joints on
# the wrist), writes it to OUT/table.md, and draws held-out MPJPE against wall time to OUT/curve.png.
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

# The models train at the same time, one torch thread each (THREADS), so machine load that comes and goes during the
# run falls on all alike (three processes share the two cores). PARALLEL=0 trains them one after the other instead.
# Validation every EVAL_EVERY steps on EVAL_SAMPLES held-out samples draws the curve (its time counts in the budget).
PARALLEL=${PARALLEL:-1}
THREADS=${THREADS:-1}
EVAL_EVERY=${EVAL_EVERY:-100}
EVAL_SAMPLES=${EVAL_SAMPLES:-128}
MODELS=${MODELS:-"amt baseline cnn"}
train_and_eval() {
  local MODEL=$1 MODEL_FLAG=()
  case "$MODEL" in
    baseline) MODEL_FLAG=(--model baseline) ;;
    cnn) MODEL_FLAG=(--model cnn_cpu) ;;
  esac
  if [ ! -f "$OUT/$MODEL.json" ]; then
    rm -rf "${OUT:?}/$MODEL"
    OMP_NUM_THREADS=$THREADS $AMT train --preset cpu "${MODEL_FLAG[@]}" --data "$TRAIN" --val-data "$TEST" \
      --run-dir "$OUT/$MODEL" --batch-size "$BATCH" --max-time "$MINUTES" --set trainer.stage_by_time=true \
      --set trainer.eval_every="$EVAL_EVERY" --set trainer.eval_samples="$EVAL_SAMPLES" --set trainer.num_workers=1 \
      > "$OUT/$MODEL.log" 2>&1
    OMP_NUM_THREADS=$THREADS $AMT eval --ckpt "$OUT/$MODEL" --data "$TEST" --json "$OUT/$MODEL.json" >> "$OUT/$MODEL.log" 2>&1
  fi
}
if [ "$PARALLEL" = 1 ]; then
  pids=()
  for MODEL in $MODELS; do train_and_eval "$MODEL" & pids+=($!); done
  for pid in "${pids[@]}"; do wait "$pid"; done
else
  for MODEL in $MODELS; do train_and_eval "$MODEL"; done
fi

python - "$OUT" "$MINUTES" $MODELS <<'PY' | tee "$OUT/table.md"
import json, sys
from pathlib import Path
out, minutes, models = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
rows = {m: json.loads((out / f"{m}.json").read_text()) for m in models}
steps = {}
for m in rows:
    events = [json.loads(l) for l in (out / m / "events.jsonl").read_text().splitlines() if l.strip()]
    steps[m] = max(e["step"] for e in events)
print(f"| model ({minutes} min, same data) | steps | MPJPE mm | PA-MPJPE mm | AUC 0-50 | pred std mm | gt std mm |")
print("|---|---|---|---|---|---|---|")
for m, r in rows.items():
    print(f"| {r['model']} | {steps[m]} | {r['mpjpe_mm']:.1f} | {r['pa_mpjpe_mm']:.1f} | {r['auc_0_50']:.3f} "
          f"| {r['pred_std_mm']:.1f} | {r['gt_std_mm']:.1f} |")
ref = rows[models[0]]  # every row scored the same held-out samples; the references are the same constants
print(f"| mean pose of the training data ({ref['ref_mean_pose_source']}) | - | {ref['ref_mean_pose_mpjpe_mm']:.1f} "
      f"| {ref['ref_mean_pose_pa_mpjpe_mm']:.1f} | - | 0.0 | {ref['gt_std_mm']:.1f} |")
print(f"| all joints at the wrist | - | {ref['ref_wrist_mpjpe_mm']:.1f} | - | - | 0.0 | {ref['gt_std_mm']:.1f} |")
print()
if "amt" in rows:
    a = rows["amt"]
    mpjpe_share = a["mpjpe_mm"] / a["ref_mean_pose_mpjpe_mm"]
    pa_share = a["pa_mpjpe_mm"] / a["ref_mean_pose_pa_mpjpe_mm"]
    spread = a["pred_std_mm"] / a["gt_std_mm"]
    print(f"AMT MPJPE / mean-pose reference: {mpjpe_share:.2f} (goal <= 0.5: {'met' if mpjpe_share <= 0.5 else 'not met'}); "
          f"PA-MPJPE / its reference: {pa_share:.2f} (goal <= 0.6: {'met' if pa_share <= 0.6 else 'not met'}); "
          f"pred std / gt std: {spread:.2f} (goal 0.5-1.5: {'met' if 0.5 <= spread <= 1.5 else 'not met'})")
    for other in ("baseline", "cnn"):
        if other in rows:
            o = rows[other]
            better = a["mpjpe_mm"] < o["mpjpe_mm"] and a["pa_mpjpe_mm"] < o["pa_mpjpe_mm"]
            print(f"AMT against {o['model']}: MPJPE {a['mpjpe_mm'] / o['mpjpe_mm']:.2f}x, "
                  f"PA-MPJPE {a['pa_mpjpe_mm'] / o['pa_mpjpe_mm']:.2f}x ({'better on both' if better else 'NOT better on both'})")
print(f"held-out samples: {ref['num_samples']}")
PY
run_dirs=()
for MODEL in $MODELS; do run_dirs+=("$OUT/$MODEL"); done
python "$(dirname "${BASH_SOURCE[0]}")/learning_curve.py" "$OUT/curve.png" "${run_dirs[@]}" \
  --title "held-out MPJPE, $MINUTES min on this CPU, same data"
