"""A 21-frame clip at 512x384 with the ``warp`` generator: total time, first frame, peak RSS.

The hole filler is the default (``auto``: LaMa when its weights are cached, else Telea); its calls
and seconds are printed. The reference is the memory-less baseline (each frame warped from the previous one only, as
memory-less autoregressive methods do), run the same way. Each run happens in a fresh Python
process so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import BenchResult

_CLIP = r"""
import json, resource, sys, time
import torch
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.runtime import keep_freed_memory
from worldstereo.scenes import get_scene
keep_freed_memory()  # as the CLI and the app run
use_memory = sys.argv[1] == "1"
view = get_scene("room").start_view(512, 384)
model = WorldStereo(WorldStereoConfig(use_ggm=use_memory, use_ssm=use_memory))
t0 = time.perf_counter()
model.start(view.image, view.depth, view.camera)
times = []
for step in model.generate("orbit_right", 21):
    times.append(time.perf_counter() - t0)
total = time.perf_counter() - t0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
filler = model.generator.filler
print(json.dumps({"total": total, "first": times[0], "rss_mb": rss_mb, "fill": filler.name,
                  "fill_calls": filler.calls, "fill_s": filler.seconds}))
"""


def _run_clip(use_memory: bool) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CLIP, "1" if use_memory else "0"], check=True, capture_output=True, text=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> BenchResult:
    ref = _run_clip(use_memory=False)
    ours = _run_clip(use_memory=True)
    return BenchResult(
        name="clip",
        value=ours["total"],
        unit="s",
        reference="memory-less warp baseline",
        reference_value=ref["total"],
        ratio=ref["total"] / ours["total"],
        aim_max=10.0,
        aim="<= 10 s, first frame <= 1 s, peak RSS <= 2 GB",
        extra=(f"first frame {ours['first']:.2f} s, peak RSS {ours['rss_mb']:.0f} MB (start + 21 frames, both memories); "
               f"fill {ours['fill']}: {ours['fill_calls']} calls, {ours['fill_s']:.2f} s"),
    )
