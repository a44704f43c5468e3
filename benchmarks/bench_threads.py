"""The thread policy: a 21-frame clip at 512x384 (``warp``, Telea, the layout prior, no Hub) through the CLI.

Ours: the policy's budget, the cores this process may use. Reference: every pool four times larger
(``WORLDSTEREO_THREADS`` = 4 x cores), as libraries that size themselves from a big machine's core
count do when the process is pinned to a few of them (the issue's 16 threads per pool on 2 cores).
Figures: wall seconds (ratio = reference / ours) and user CPU seconds per wall second of each, from
``resource.getrusage`` of the child. Each runs in a fresh process, twice, alternating; medians.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BenchResult
from worldstereo.threads import available_cores

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "assets" / "examples" / "images" / "photorealistic-outdoor-verdant_landscape-050" / "image.png"


def _clip(threads: int) -> tuple[float, float]:
    """(wall seconds, user seconds) of one CLI clip with a thread budget of ``threads``."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "WORLDSTEREO_THREADS": str(threads)}
    env.pop("NUMBA_NUM_THREADS", None)
    env.pop("OMP_NUM_THREADS", None)
    with tempfile.TemporaryDirectory() as out:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "worldstereo.cli", "generate", "--image", str(IMAGE), "--preset", "orbit_right",
                        "--frames", "21", "--size", "512x384", "--fill", "telea", "--depth-backend", "prior", "--out", out,
                        "--quiet", "--no-snapshot"], env=env, check=True, cwd=ROOT)
        wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime


def run(repeats: int = 2) -> BenchResult:
    cores = available_cores()
    ours, ref = [], []
    for _ in range(repeats):
        ours.append(_clip(cores))
        ref.append(_clip(4 * cores))
    wall = statistics.median(w for w, _ in ours)
    ref_wall = statistics.median(w for w, _ in ref)
    user = statistics.median(u / w for w, u in ours)
    ref_user = statistics.median(u / w for w, u in ref)
    return BenchResult(
        name="threads",
        value=wall,
        unit="s",
        reference=f"every pool at 4 x {cores} cores",
        reference_value=ref_wall,
        ratio=ref_wall / wall,
        aim="user time <= 2x wall",
        extra=f"user/wall {user:.2f} (reference {ref_user:.2f}); {cores} cores",
    )
