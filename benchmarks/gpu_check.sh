#!/usr/bin/env bash
# GPU checks, for a machine with CUDA (one prepared run; about 5 minutes on an H200):
# 1. the benchmarks' CUDA paths (splat, GGM update and query, the grid k-NN at 100K x 1M, SSM attention)
#    against their CPU results and timings (benchmarks/cuda_check.py);
# 2. the vace generator (benchmarks/gpu_check.py): one 21-frame clip of a real example with the cached
#    Wan2.1-VACE weights, or the tiny random pipeline on CUDA without them, with its time breakdown;
# 3. the warp tier through the CLI with the memories on the GPU: 21 frames at 512x384, wall and user
#    seconds (aims: <= 3 s, user <= 2x wall), and the same pinned to 2 cores;
# 4. start-up: command to first frame with no Hub (benchmarks/bench_startup.py; aim <= 6 s there);
# 5. the splat fit (worldstereo splats fit) of a small world: iterations per second, held-out PSNR / SSIM
#    before and after (needs gsplat's CUDA kernels: the CUDA toolkit builds them on first use).
# Every step runs even if one before it fails; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
note() { local rc=$1; [ "$rc" -ne 0 ] && [ "$status" -eq 0 ] && status=$rc; return 0; }
python -m benchmarks.cuda_check; note $?
python -m benchmarks.gpu_check "$@"; note $?
image=assets/examples/images/photorealistic-outdoor-verdant_landscape-050/image.png
out=$(mktemp -d)
pins=("")
command -v taskset >/dev/null && pins+=("taskset -c 0,1")
TIMEFORMAT="wall %R s, user %U s, sys %S s"
for pin in "${pins[@]}"; do
  echo "warp clip, 21 frames at 512x384${pin:+ ($pin)}:"
  time (HF_HUB_OFFLINE=1 $pin python -m worldstereo.cli generate \
    --image "$image" --preset orbit_right --frames 21 --size 512x384 --generator warp --fill telea \
    --depth-backend prior --device auto --out "$out/warp" --overwrite --quiet --no-snapshot); note $?
done
rm -rf "$out"
python -m benchmarks startup --runs 1; note $?
world=$(mktemp -d)
HF_HUB_OFFLINE=1 python -m worldstereo.cli world --image "$image" --size 512x384 --frames 21 --trajectories 2 \
  --depth-backend prior --fill telea --generator warp --no-ray --no-mesh --quiet --out "$world/D"; note $?
python -m worldstereo.cli splats fit "$world/D" --iterations 2000; note $?
rm -rf "$world"
exit "$status"
