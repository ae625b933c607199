#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, in phases that each fit one 10-minute device call:
#   scripts/gpu_bench.sh ceilings   the CUDA-only tests, the card's bf16 matmul rate and copy bandwidth, `amt-core info`
#   scripts/gpu_bench.sh core       dinov2_l at 224 px: fp32 / bf16 / fp8, sdpa vs auto, eager vs compiled (MFU goal)
#   scripts/gpu_bench.sh sizes      dinov2_s and dinov2_g: bf16 and fp8, compiled, with and without checkpointing
#   scripts/gpu_bench.sh large      dinov2_l at 518 px (1370 tokens), the largest batch that fits, and FP8's threshold
#   scripts/gpu_bench.sh pipeline   dinov2_l bf16 compiled on fresh batches from the loader: the device's busy share
# Each writes JSON under $OUT (default bench-out/) and prints the table last.
# On a lent device machine: run scripts/gpu_prepare.sh here first and carry [".whl", ".gpu-cache"]; this script then
# installs the wheels into /tmp/site and reads the SDF grids and the shard from .gpu-cache. The train phases use
# `noise:` data (a step costs the same on any content; Open3D cannot travel); the pipeline phase reads real shards.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
if [ -d .whl ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
[ -d .gpu-cache ] && export AMT_CACHE_DIR="$PWD/.gpu-cache"
phase="${1:-core}"
NOISE224="noise:?size=224"
amt() { python3 -m amt_core "$@"; }
bench() {  # bench NAME ARGS...: JSON to $OUT/NAME.json, and a table on the terminal from the same run
  local name="$1"
  shift
  amt bench train "$@" --json | tee "$OUT/$name.json" | python3 -c '
import json, sys
result = json.load(sys.stdin)
keys = ["precision", "attn", "compile", "ckpt", "batch", "images_per_s", "step_ms", "peak_mb", "tflops", "mfu",
        "fp8", "max_batch", "device_busy", "error"]
print(result.get("preset"), result.get("model"), result.get("device"), "GFLOP/img", result.get("gflop_per_image"))
for row in result["rows"]:
    print("  ".join(f"{k}={row[k]:.4g}" if isinstance(row.get(k), float) else f"{k}={row[k]}" for k in keys if k in row))
'
}

case "$phase" in
  ceilings)
    amt info --json >"$OUT/info.json"
    # the tests that skip without CUDA: every attention kernel against the math path, autotuning, FP8 conversion
    python3 -m pytest -q -p no:cacheprovider tests/test_attention.py tests/test_attention_autotune.py tests/test_fp8.py \
      tests/test_no_host_sync.py 2>&1 | tee "$OUT/gpu-tests.txt" | tail -5
    python3 - <<'EOF' | tee "$OUT/ceilings.txt"
import torch
device = torch.device("cuda")
a, b = (torch.randn(8192, 8192, device=device, dtype=torch.bfloat16) for _ in range(2))
x = torch.randn(2**28, device=device)  # 1 GiB
def timed(fn, n=20):
    for _ in range(3):
        fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / 1000 / n
mm = timed(lambda: a @ b)
copy = timed(lambda: x.clone())
print(f"{torch.cuda.get_device_name()}: bf16 matmul {2 * 8192**3 / mm / 1e12:.0f} TFLOP/s, "
      f"copy {2 * x.numel() * 4 / copy / 1e9:.0f} GB/s (read + write)")
EOF
    ;;
  core)
    bench dinov2_l-core --preset dinov2_l --precision fp32,bf16,fp8 --attn sdpa,auto --compile both --steps 10 \
      --set "data=$NOISE224"
    ;;
  sizes)
    bench dinov2_s --preset dinov2_s --precision bf16,fp8 --compile on --checkpointing none,full --steps 10 \
      --set "data=$NOISE224"
    bench dinov2_g --preset dinov2_g --precision bf16,fp8 --compile on --checkpointing full,selective --steps 5 \
      --set "data=$NOISE224"
    ;;
  large)
    amt bench fp8 --json >"$OUT/fp8-threshold.json" || true
    bench dinov2_l_518 --preset dinov2_l_518 --precision bf16 --attn sdpa,auto --compile on --max-batch --steps 5 \
      --set "data=noise:?size=518"
    bench dinov2_g_518 --preset dinov2_g_518 --precision bf16 --checkpointing none,selective --steps 3 \
      --set "data=noise:?size=518"
    bench dinov2_g_518-offload --preset dinov2_g_518 --precision bf16 --checkpointing none --steps 3 \
      --set "data=noise:?size=518" --set trainer.offload_activations=true
    ;;
  pipeline)
    # real shards through the trainer's loader (the carried 64 samples, cycled: reading and moving them costs what
    # any shard costs); live rendering cannot run here (no Open3D) and could not feed a GPU preset anyway
    shards=".gpu-cache/shards224"
    [ -d "$shards" ] || { echo "gpu_bench: no $shards; run scripts/gpu_prepare.sh first and carry .gpu-cache" >&2; exit 2; }
    amt bench data --data "synth:$shards" --workers 4,8,12 --batch-size 64 --batches 16 --json | tee "$OUT/data.json"
    bench dinov2_l-pipeline --preset dinov2_l --precision bf16 --compile on --pipeline --warmup 5 --steps 40 \
      --batch-size 64 --set "data=synth:$shards" --set trainer.num_workers=12
    ;;
  *)
    echo "gpu_bench: unknown phase '$phase'; use ceilings, core, sizes, large or pipeline" >&2
    exit 2
    ;;
esac
