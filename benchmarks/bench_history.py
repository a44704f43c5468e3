"""The inspection history's cost on a 49-frame path at the app's default size (384 x 288, the bicycle example,
offline prior, ``warp`` + Telea).

Figure: the time :meth:`MemoryHistory.record` adds to a frame (ms). Reference: a frame of the same path with the
history off (``history_mb=0``), in the same process; the ratio is how many times longer a frame takes than its
record (aim: at least 20, i.e. the record adds at most 5%).
Also printed: the history's size (aim: at most 200 MB), and the slowest :meth:`MemoryHistory.state_at` over every
frame of the path, visited in a scrubbing order (aim: within the scrub aim, 0.5 s).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from benchmarks.common import BenchResult

EXAMPLE = Path(__file__).resolve().parents[1] / "assets" / "examples" / "reconstruction" / "bicycle"


def _model(history_mb: int):
    from worldstereo.formats import read_example_folder
    from worldstereo.model import WorldStereo, WorldStereoConfig

    ex = read_example_folder(EXAMPLE)
    cfg = WorldStereoConfig(width=384, height=288, generator="warp", fill="telea", depth_backend="prior",
                            history_mb=history_mb)
    model = WorldStereo(cfg)
    model.start(ex.image, camera=ex.paths[0].cameras[0], align_to=ex.paths[0].cameras)
    list(model.generate("orbit_right", num_frames=3))  # compiled kernels and caches warm
    return model


def run() -> BenchResult:
    from worldstereo.history import MemoryHistory

    spent = [0.0]
    original = MemoryHistory.record

    def timed(self, *a, **k):
        t = time.perf_counter()
        try:
            return original(self, *a, **k)
        finally:
            spent[0] += time.perf_counter() - t

    off = _model(0)
    t0 = time.perf_counter()
    list(off.generate("orbit_left", num_frames=49))
    ref_frame = (time.perf_counter() - t0) / 49
    on = _model(256)
    MemoryHistory.record = timed
    try:
        t0 = time.perf_counter()
        steps = list(on.generate("orbit_left", num_frames=49))
        frame = (time.perf_counter() - t0) / 49
    finally:
        MemoryHistory.record = original
    share = spent[0] / 49 / frame
    ids = [s.frame_id for s in steps]
    order = ids[-1:] + random.Random(0).sample(ids, len(ids))  # the newest first, then anywhere
    slowest = 0.0
    for fid in order:
        t = time.perf_counter()
        on.history.state_at(fid)
        slowest = max(slowest, time.perf_counter() - t)
    record_ms = 1000 * spent[0] / 49
    return BenchResult(
        name="history",
        value=record_ms,
        unit="ms",
        reference="a frame with the history off",
        reference_value=1000 * ref_frame,
        ratio=1000 * ref_frame / record_ms,
        aim="record <= 5% of a frame (>= 20x), <= 200 MB, state_at <= 0.5 s",
        aim_ratio=20.0,
        extra=(f"record {100 * share:.1f}% of a {1000 * frame:.0f} ms frame; history "
               f"{on.history.nbytes / 2**20:.0f} MB for {len(on.history)} frames ({on.ggm.num_points:,} points); "
               f"slowest state_at {1000 * slowest:.0f} ms over {len(order)} visits"),
    )
