"""A batch of 4 inputs on Ray with 2 workers against 1 worker; and Ray's start-up cost.

Inputs: the four example photos shipped in ``assets/examples``, each one path (``orbit_left``, 21
frames at 256 x 192, the offline prior and Telea). Each batch runs as ``worldstereo batch`` in a fresh
process with an embedded Ray; the figure is its wall time with ``--workers 2``, the reference the
same with ``--workers 1`` (ratio = speed-up). Peak RSS is the largest sum over the process tree
(driver, raylet, workers), sampled every 0.2 s. Ray's start-up: ``ray.init`` plus one trivial
task's round trip, in a fresh process.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BenchResult

REPO = Path(__file__).resolve().parents[1]
INPUTS = sorted(str(p) for p in (REPO / "assets" / "examples").glob("*/*/image.png"))

_STARTUP = r"""
import time
t0 = time.perf_counter()
import ray
ray.init(include_dashboard=False, log_to_driver=False, configure_logging=False)
@ray.remote
def one():
    return 1
assert ray.get(one.remote()) == 1
print(time.perf_counter() - t0)
"""


def _tree_rss(proc) -> int:
    import psutil

    try:
        p = psutil.Process(proc.pid)
        procs = [p, *p.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for q in procs:
        try:
            total += q.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def _batch(workers: int) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "worldstereo.cli", "batch", *INPUTS, "--preset", "orbit_left", "--frames", "21",
               "--size", "256x192", "--fill", "telea", "--depth-backend", "prior", "--out", d, "--quiet",
               "--workers", str(workers)]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        peak = 0
        while proc.poll() is None:
            peak = max(peak, _tree_rss(proc))
            time.sleep(0.2)
        seconds = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"batch failed: {proc.stderr.read()[-500:]}")
    return seconds, peak / 2**20


def run() -> BenchResult:
    startup = float(subprocess.run([sys.executable, "-c", _STARTUP], check=True, capture_output=True,
                                   text=True).stdout.strip().splitlines()[-1])
    one_s, one_mb = _batch(1)
    two_s, two_mb = _batch(2)
    return BenchResult(
        name="batch",
        value=two_s,
        unit="s",
        reference="the same batch on 1 worker",
        reference_value=one_s,
        ratio=one_s / two_s,
        aim="figures for the README",
        extra=f"{len(INPUTS)} inputs; peak RSS {two_mb:.0f} MB (1 worker: {one_mb:.0f} MB); Ray start-up {startup:.1f} s",
    )
