#!/usr/bin/env bash
# Same figures before and after a refactor (issues 14 and 24): 240 `cpu` preset steps through all three stages (80
# each) on fixed rendered data, one thread, then `eval` on held-out samples. Prints the held-out metrics and the hash
# of the final weights; two trees that train identically print identical lines.
#
#   bash scripts/same_figures.sh OUT          # OUT: a scratch folder (the data is rendered once and reused)
#
# Run it from each tree (a `git worktree` of the older commit for "before"), with the same OUT for the data.
set -euo pipefail
OUT="${1:?usage: bash scripts/same_figures.sh OUT}"
cd "$(dirname "$0")/.."
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 CUDA_VISIBLE_DEVICES="" PYTHONHASHSEED=0
amt() { python -m amt_core "$@"; }
mkdir -p "$OUT"
[ -f "$OUT/train/.done" ] || { amt synth --out "$OUT/train" --num 640 --size 128 --seed 11 >/dev/null && touch "$OUT/train/.done"; }
[ -f "$OUT/val/.done" ] || { amt synth --out "$OUT/val" --num 256 --size 128 --seed 12 >/dev/null && touch "$OUT/val/.done"; }
tag="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- amt_core || echo '+dirty')"
run="$OUT/run_$tag"
rm -rf "$run"
amt train --preset cpu --run-dir "$run" --data "synth:$OUT/train" --val-data "synth:$OUT/val" --max-steps 240 \
  --set stages.0.steps=80 --set stages.1.steps=80 --set stages.2.steps=80 --set trainer.num_workers=0 \
  --set trainer.progress=none >/dev/null
last="$run/checkpoints/$(cat "$run/checkpoints/latest")"
amt eval --ckpt "$last" --data "synth:$OUT/val" --json "$run/eval.json" >/dev/null
python - "$run" "$tag" "$last" <<'PY'
import hashlib, json, sys
from pathlib import Path

import torch
from safetensors.torch import load_file

run, tag, latest = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
metrics = json.loads((run / "eval.json").read_text())
# the tensors, not the file: safetensors writes its metadata map in no fixed order
digest = hashlib.sha256()
for path in sorted(latest.glob("*.safetensors")):
    tensors = load_file(path)
    for key in sorted(tensors):
        digest.update(key.encode() + tensors[key].contiguous().view(-1).view(torch.uint8).numpy().tobytes())
digest = digest.hexdigest()[:16]
flat = {k: v for k, v in metrics.items() if isinstance(v, (int, float))} if isinstance(metrics, dict) else metrics
print(f"{tag} {latest.name} weights {digest}")
print(json.dumps(flat, sort_keys=True))
PY
