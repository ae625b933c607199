#!/usr/bin/env bash
# Run HERE (where PyPI answers) before device calls: the device machine has torch and timm but not smplx, trimesh,
# roma or manifold3d, cannot install Open3D (its wheel is far over the 64 MiB a call can carry), and builds no SDF
# grids without it. This writes what scripts/gpu_bench.sh needs into two git-ignored folders; name both in `carry`:
#   .whl/        wheels of the missing pure-Python / small packages, at the versions installed here (Python 3.12)
#   .gpu-cache/  the object SDF grids (AMT_CACHE_DIR) and one 64-sample shard at 224 px for the pipeline phase
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
for ignored in /.whl/ /.gpu-cache/; do
  grep -qxF "$ignored" .git/info/exclude 2>/dev/null || echo "$ignored" >>.git/info/exclude
done
packages=()
for name in smplx trimesh roma manifold3d; do
  packages+=("$name==$(python3 -c "import importlib.metadata as m; print(m.version('$name'))")")
done
rm -rf .whl && mkdir -p .whl
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl "${packages[@]}"
rm -rf .gpu-cache && mkdir -p .gpu-cache
export AMT_CACHE_DIR="$PWD/.gpu-cache"
python3 -c "from amt_core.objects.tables import ObjectTables; ObjectTables.from_catalog()"  # SDF grids
rm -rf .gpu-cache/grasp_bank
amt-core synth --out .gpu-cache/shards224 --num 64 --seed 0 --size 224 --workers 2 >/dev/null
rm -rf .gpu-cache/grasp_bank
du -sh .whl .gpu-cache
echo "gpu_prepare: done; run scripts/gpu_bench.sh PHASE on the device with carry [\".whl\", \".gpu-cache\"]"
