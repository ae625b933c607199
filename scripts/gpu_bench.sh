#!/usr/bin/env bash
# The GPU measurements of docs/performance.md, in phases that each fit one 10-minute device call:
#   scripts/gpu_bench.sh ceilings   the CUDA-only tests, the card's bf16 matmul rate and copy bandwidth, `amt-core info`
#   scripts/gpu_bench.sh core       dinov2_l at 224 px: fp32 / bf16 / fp8, sdpa vs auto, eager vs compiled (MFU goal)
#   scripts/gpu_bench.sh sizes      dinov2_s and dinov2_g: bf16 and fp8, compiled, with and without checkpointing
#   scripts/gpu_bench.sh large      dinov2_l at 518 px (1370 tokens), the largest batch that fits, and FP8's threshold
#   scripts/gpu_bench.sh pipeline   dinov2_l bf16 compiled on fresh batches from the loader: the device's busy share
# Each writes JSON under $OUT (default bench-out/) and prints the table last. The project must be importable
# (`pip install -e .` or the wheels the device README describes, with PYTHONPATH set).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT="${OUT:-bench-out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
phase="${1:-core}"
bench() {  # bench NAME ARGS...: JSON to $OUT/NAME.json, and a table on the terminal from the same run
  local name="$1"
  shift
  amt-core bench train "$@" --json | tee "$OUT/$name.json" | python -c '
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
    amt-core info --json >"$OUT/info.json"
    # the tests that skip without CUDA: every attention kernel against the math path, autotuning, FP8 conversion
    python -m pytest -q -p no:cacheprovider tests/test_attention.py tests/test_attention_autotune.py tests/test_fp8.py \
      tests/test_no_host_sync.py 2>&1 | tee "$OUT/gpu-tests.txt" | tail -5
    python - <<'EOF' | tee "$OUT/ceilings.txt"
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
    bench dinov2_l-core --preset dinov2_l --precision fp32,bf16,fp8 --attn sdpa,auto --compile both --steps 10
    ;;
  sizes)
    bench dinov2_s --preset dinov2_s --precision bf16,fp8 --compile on --checkpointing none,full --steps 10
    bench dinov2_g --preset dinov2_g --precision bf16,fp8 --compile on --checkpointing full,selective --steps 5
    ;;
  large)
    amt-core bench fp8 --json >"$OUT/fp8-threshold.json" || true
    bench dinov2_l_518 --preset dinov2_l_518 --precision bf16 --attn sdpa,auto --compile on --max-batch --steps 5
    ;;
  pipeline)
    # live rendering cannot feed a GPU preset (about 6 images/s per core at 224 px): pre-rendered shards can
    amt-core synth --out "$OUT/shards224" --num 4096 --seed 0 --size 224 --workers "$(($(nproc) - 2))"
    amt-core bench data --data "synth:$OUT/shards224" --workers 4,8,12 --batch-size 128 --batches 8 --json \
      | tee "$OUT/data.json"
    bench dinov2_l-pipeline --preset dinov2_l --precision bf16 --compile on --pipeline --warmup 5 --steps 40 \
      --set "data=synth:$OUT/shards224" --set trainer.num_workers=12
    ;;
  *)
    echo "gpu_bench: unknown phase '$phase'; use ceilings, core, sizes, large or pipeline" >&2
    exit 2
    ;;
esac
