"""Scrubbing the memory inspector: a session of the app (the bicycle at 512 x 384, the largest working size, offline
prior, ``warp`` + Telea) after a 49-frame orbit (about 800K points in memory), with 300,000 points shown; the time
from the slider's event to the scene update sent (:meth:`ui.session_inspector.Inspection.inspect`: the memories
of that frame from the history, coloured, drawn).

Figure: the slowest of 25 visits to frames in a scrubbing order (the newest, then anywhere, in each colour mode;
aim: at most 0.5 s). Reference: what the history spares, the memories of the middle frame made again by loading
the start's snapshot and generating the path up to it, in the same process.
"""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.common import BenchResult

EXAMPLE = "example: bicycle"


def run() -> BenchResult:
    from ui.config import AppConfig
    from ui.inspector import COLOUR_MODES
    from ui.samples import load_sample
    from ui.sessions import SessionManager
    from worldstereo.model import WorldStereo

    with tempfile.TemporaryDirectory() as tmp:
        manager = SessionManager(AppConfig(temp_root=Path(tmp) / "sessions", max_view_points=300_000))
        try:
            s = manager.get("bench")
            s.load(load_sample(EXAMPLE, 512, 384), "512x384", depth_backend="prior", fill="telea")
            s.model.save(Path(tmp) / "start")
            s.set_path("preset", "orbit_left", 1.0, False, 49)
            list(s.generate(49))
            frames = s.timeline()
            order = [frames[-1]] + random.Random(0).sample(frames, 24)
            times, shown = [], 0
            for i, fid in enumerate(order):
                v = s.inspect(fid, COLOUR_MODES[i % len(COLOUR_MODES)])
                times.append(v.seconds)
                shown = max(shown, v.shown)
            path = s.model.paths[-1]
            mid = len(frames) // 2
            t0 = time.perf_counter()
            again = WorldStereo.load(Path(tmp) / "start")
            for _ in zip(range(mid), again.generate(path[:mid], num_frames=mid), strict=False):
                pass
            ref = time.perf_counter() - t0
            total = s.model.ggm.num_points
        finally:
            manager.shutdown()
    worst = max(times)
    return BenchResult(
        name="scrub",
        value=worst,
        unit="s",
        reference=f"the middle frame's memories made again (start snapshot + {mid} frames)",
        reference_value=ref,
        ratio=ref / worst,
        aim="<= 0.5 s",
        aim_max=0.5,
        extra=(f"median {statistics.median(times):.3f} s over {len(times)} visits, {shown:,} points drawn of "
               f"{total:,} in the memory"),
    )
