#!/usr/bin/env bash
# GPU checks, for a machine with CUDA:
# 1. the benchmarks' CUDA paths (splat, GGM update and query, SSM attention) against their CPU results
#    and timings (benchmarks/cuda_check.py);
# 2. the vace generator (benchmarks/gpu_check.py): one 21-frame clip of a real example with the cached
#    Wan2.1-VACE weights, or the tiny random pipeline on CUDA without them.
# Both run even if the first finds a difference; the exit status is the first failure's.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
python -m benchmarks.cuda_check || status=$?
python -m benchmarks.gpu_check "$@" || { rc=$?; [ "$status" -eq 0 ] && status=$rc; }
exit "$status"
