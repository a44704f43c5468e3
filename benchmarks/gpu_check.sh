#!/usr/bin/env bash
# GPU check of the vace generator (see benchmarks/gpu_check.py): one 21-frame clip of a real example
# with the cached Wan2.1-VACE weights, or the tiny random pipeline on CUDA without them.
set -euo pipefail
cd "$(dirname "$0")/.."
python -m benchmarks.gpu_check "$@"
