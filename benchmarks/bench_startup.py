"""Start-up: seconds from the command to the first generated frame, with no Hub.

Ours: ``python -m worldstereo.cli generate --example <the first example in assets/examples> --frames 3
--size 512x384`` in a fresh process with ``HF_HUB_OFFLINE=1`` (so every learned part falls back at
once, as on a machine without the Hub), timed from the launch to the progress bar's ``1/3`` on
stderr, the first frame done. Also the first ``note:`` line (imports, inputs, start view) and the
exit. Reference: ``python -c "import torch"`` in a fresh process, the floor every entry point pays.
Aim: <= 3 s to the first frame on this (2-core) machine.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import BenchResult

ROOT = Path(__file__).resolve().parents[1]


def _example() -> Path:
    return sorted(p for p in (ROOT / "assets" / "examples" / "images").iterdir() if (p / "image.png").exists())[0]


def _first_frame() -> dict[str, float]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "worldstereo.cli", "generate", "--example", str(_example()), "--frames", "3",
               "--size", "512x384", "--out", out]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, env=env, cwd=ROOT)
        marks: dict[str, float] = {}
        text = b""
        assert proc.stderr is not None
        while True:
            chunk = proc.stderr.read1(4096)
            if not chunk:
                break
            text += chunk
            now = time.perf_counter() - t0
            if "note" not in marks and b"note:" in text:
                marks["note"] = now
            if "frame" not in marks and b"1/3" in text:
                marks["frame"] = now
        proc.wait()
        marks["exit"] = time.perf_counter() - t0
    if proc.returncode != 0 or "frame" not in marks:
        raise RuntimeError(f"the CLI failed ({proc.returncode}): {text.decode(errors='replace')[-400:]}")
    return marks


def _torch_import() -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import torch"], check=True)
    return time.perf_counter() - t0


def run(repeats: int = 3) -> BenchResult:
    _first_frame()  # warm the file cache and numba's kernel cache
    ours = [_first_frame() for _ in range(repeats)]
    ref = statistics.median(_torch_import() for _ in range(repeats))
    frame = statistics.median(m["frame"] for m in ours)
    note = statistics.median(m["note"] for m in ours)
    done = statistics.median(m["exit"] for m in ours)
    return BenchResult(
        name="startup",
        value=frame,
        unit="s",
        reference="python -c 'import torch'",
        reference_value=ref,
        ratio=ref / frame,
        aim="<= 3 s to the first frame (2 cores)",
        aim_max=3.0,
        extra=f"first note {note:.2f} s, exit {done:.2f} s (3 frames and the exports); torch import {ref:.2f} s",
    )
