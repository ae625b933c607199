#!/usr/bin/env bash
# AMT (the `cpu` preset) against its baseline and a plain CNN on this CPU: the same pre-rendered synthetic data, the
# same wall time, evaluated on a held-out synthetic split (another seed). Prints a Markdown table (MPJPE, PA-MPJPE,
# AUC, prediction std) with the trivial references on the same samples (the training data's mean pose, all joints on
# the wrist), writes it to OUT/table.md, and draws held-out MPJPE against wall time to OUT/curve.png.
#
#   scripts/side_by_side.sh [OUT]                 # the README's 20-minute comparison (default OUT=runs/side_by_side)
#   REPEATS=3 scripts/side_by_side.sh [OUT]       # three runs of each model (trainer.seed 0, 1, 2: initialisation and
#                                                 # data order), the table gives the mean and its spread
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
REPEATS=${REPEATS:-1}
# Run r of a model lives in OUT/MODEL (r = 0) or OUT/MODEL.r<r>, trained with trainer.seed=r; a finished run (its
# eval json exists) is kept, so an interrupted comparison resumes where it stopped.
run_name() { if [ "$2" = 0 ]; then echo "$1"; else echo "$1.r$2"; fi; }
train_and_eval() {
  local MODEL=$1 REPEAT=$2 MODEL_FLAG=() NAME
  NAME=$(run_name "$MODEL" "$REPEAT")
  case "$MODEL" in
    baseline) MODEL_FLAG=(--model baseline) ;;
    cnn) MODEL_FLAG=(--model cnn_cpu) ;;
  esac
  if [ ! -f "$OUT/$NAME.json" ]; then
    rm -rf "${OUT:?}/$NAME"
    OMP_NUM_THREADS=$THREADS $AMT train --preset cpu "${MODEL_FLAG[@]}" --data "$TRAIN" --val-data "$TEST" \
      --run-dir "$OUT/$NAME" --batch-size "$BATCH" --max-time "$MINUTES" --set trainer.stage_by_time=true \
      --set trainer.eval_every="$EVAL_EVERY" --set trainer.eval_samples="$EVAL_SAMPLES" --set trainer.num_workers=1 \
      --set trainer.seed="$REPEAT" > "$OUT/$NAME.log" 2>&1
    OMP_NUM_THREADS=$THREADS $AMT eval --ckpt "$OUT/$NAME" --data "$TEST" --json "$OUT/$NAME.json" >> "$OUT/$NAME.log" 2>&1
  fi
}
for ((REPEAT = 0; REPEAT < REPEATS; REPEAT++)); do
  if [ "$PARALLEL" = 1 ]; then
    pids=()
    for MODEL in $MODELS; do train_and_eval "$MODEL" "$REPEAT" & pids+=($!); done
    for pid in "${pids[@]}"; do wait "$pid"; done
  else
    for MODEL in $MODELS; do train_and_eval "$MODEL" "$REPEAT"; done
  fi
done

python - "$OUT" "$MINUTES" "$REPEATS" $MODELS <<'PY' | tee "$OUT/table.md"
import json, os, statistics, sys
from pathlib import Path
out, minutes, repeats, models = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), sys.argv[4:]
names = {m: [m if r == 0 else f"{m}.r{r}" for r in range(repeats)] for m in models}
runs = {m: [json.loads((out / f"{n}.json").read_text()) for n in names[m]] for m in models}
for m in models:
    for name, run in zip(names[m], runs[m]):
        events = [json.loads(l) for l in (out / name / "events.jsonl").read_text().splitlines() if l.strip()]
        run["steps"] = max(e["step"] for e in events)

def mean(m, key):
    return statistics.mean(r[key] for r in runs[m])

def cell(m, key, digits=1):
    values = [r[key] for r in runs[m]]
    text = f"{statistics.mean(values):.{digits}f}"
    return text + (f" ± {statistics.stdev(values):.{digits}f}" if len(values) > 1 else "")

what = f"{minutes} min, same data" + (f", mean ± std of {repeats} runs" if repeats > 1 else "")
print(f"| model ({what}) | steps | MPJPE mm | PA-MPJPE mm | AUC 0-50 | pred std mm | gt std mm |")
print("|---|---|---|---|---|---|---|")
for m in models:
    print(f"| {runs[m][0]['model']} | {mean(m, 'steps'):.0f} | {cell(m, 'mpjpe_mm')} | {cell(m, 'pa_mpjpe_mm')} "
          f"| {cell(m, 'auc_0_50', 3)} | {cell(m, 'pred_std_mm')} | {runs[m][0]['gt_std_mm']:.1f} |")
ref = runs[models[0]][0]  # every run scored the same held-out samples; the references are the same constants
print(f"| mean pose of the training data ({ref['ref_mean_pose_source']}) | - | {ref['ref_mean_pose_mpjpe_mm']:.1f} "
      f"| {ref['ref_mean_pose_pa_mpjpe_mm']:.1f} | - | 0.0 | {ref['gt_std_mm']:.1f} |")
print(f"| all joints at the wrist | - | {ref['ref_wrist_mpjpe_mm']:.1f} | - | - | 0.0 | {ref['gt_std_mm']:.1f} |")
print()
if "amt" in runs:
    mpjpe_share = mean("amt", "mpjpe_mm") / ref["ref_mean_pose_mpjpe_mm"]
    pa_share = mean("amt", "pa_mpjpe_mm") / ref["ref_mean_pose_pa_mpjpe_mm"]
    spread = mean("amt", "pred_std_mm") / ref["gt_std_mm"]
    print(f"AMT MPJPE / mean-pose reference: {mpjpe_share:.2f} (goal <= 0.4: {'met' if mpjpe_share <= 0.4 else 'not met'}); "
          f"PA-MPJPE / its reference: {pa_share:.2f} (goal <= 0.5: {'met' if pa_share <= 0.5 else 'not met'}); "
          f"pred std / gt std: {spread:.2f} (goal 0.7-1.3: {'met' if 0.7 <= spread <= 1.3 else 'not met'})")
    for other in ("baseline", "cnn"):
        if other in runs:
            a_mpjpe, a_pa = mean("amt", "mpjpe_mm"), mean("amt", "pa_mpjpe_mm")
            o_mpjpe, o_pa = mean(other, "mpjpe_mm"), mean(other, "pa_mpjpe_mm")
            better = a_mpjpe < o_mpjpe and a_pa < o_pa
            print(f"AMT against {runs[other][0]['model']}: MPJPE {a_mpjpe / o_mpjpe:.2f}x, PA-MPJPE {a_pa / o_pa:.2f}x "
                  f"({'better on both' if better else 'NOT better on both'}; means of {repeats} runs)")
load = os.getloadavg()
print(f"held-out samples: {ref['num_samples']}; load average at the end {load[0]:.1f} {load[1]:.1f} {load[2]:.1f}")
PY
run_dirs=()
for MODEL in $MODELS; do run_dirs+=("$OUT/$MODEL"); done
python "$(dirname "${BASH_SOURCE[0]}")/learning_curve.py" "$OUT/curve.png" "${run_dirs[@]}" \
  --title "held-out MPJPE, $MINUTES min on this CPU, same data"
