"""A world from a panorama with the default plan (4 walks out and back, 21 frames each) at 416 x 240.

Ours: ``worldstereo.world.build_world`` (rounds: every walk from the round's start, folded in plan
order; frames, depths, masks, each finished walk's observations and the round's snapshot written), ``warp``
+ Telea, the offline room prior, the synthetic room's panorama (1024 x 512; rendered before the clock
starts). Figure: generated frames per second over the rounds (``WorldSummary.seconds``: the start, and the
exports a finished world writes once, excluded; the exports' times and sizes, the splats, the COLMAP model and
the mesh, are printed beside it, with the whole build's time). Reference: the same four walks generated one after
another with ``WorldStereo.generate`` and nothing written: what the world's rounds and files cost on top. Aim: at
least 0.9x. Each runs in a fresh process so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import BenchResult

_WORLD = r"""
import json, resource, sys, tempfile, time
import torch
from worldstereo import trajectory
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.panorama.synthetic import render_panorama
from worldstereo.runtime import keep_freed_memory
from worldstereo.world import build_world, panorama_plan
keep_freed_memory()
pano = render_panorama("room", 1024)
plan = panorama_plan(4, 21)
config = WorldStereoConfig(width=416, height=240, generator="warp", fill="telea", depth_backend="prior")
model = WorldStereo(config)
t0 = time.perf_counter()
model.start_panorama(pano.image)
start_s = time.perf_counter() - t0


t1 = time.perf_counter()
if sys.argv[1] == "ours":
    with tempfile.TemporaryDirectory() as d:
        s = build_world(plan, d, {"input": "bench"}, lambda start: model, progress=False)
        frames, points, rounds_s = sum(len(plan.preset_cameras(t, model.start_camera, model.scene_depth))
                                       for t in plan.trajectories), s.points, s.seconds
        exports = json.load(open(d + "/world.json"))["exports"]
else:
    frames = 0
    for t in plan.trajectories:
        frames += sum(1 for _ in model.generate(plan.preset_cameras(t, model.start_camera, model.scene_depth)))
    points = model.ggm.num_points
    exports = {}
seconds = time.perf_counter() - t1
if sys.argv[1] != "ours":
    rounds_s = seconds
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"seconds": seconds, "frames": frames, "fps": frames / rounds_s, "rounds_s": rounds_s, "start_s": start_s,
                  "rss_mb": rss_mb, "points": points, "exports": exports}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _WORLD, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _exports(ex: dict) -> str:
    """The extras' figures: the mesh's time and size (aim: at most 20 s), the splats', the COLMAP model's."""
    m, sp, c = ex["mesh"], ex["splats"], ex["colmap"]
    return (f"mesh {m['seconds']:.1f} s (aim <= 20 s), {m['bytes'] / 2**20:.1f} MiB, {m['vertices']:,} vertices, "
            f"voxel {m['voxel']:.4f}, grid {'x'.join(map(str, m['grid']))}; splats {sp['seconds']:.1f} s, "
            f"{sp['bytes'] / 2**20:.1f} MiB; COLMAP {c['seconds']:.1f} s")


def run() -> BenchResult:
    ref = _run("reference")
    ours = _run("ours")
    return BenchResult(
        name="world",
        value=ours["fps"],
        unit="frames/s",
        reference="the same walks with generate(), nothing written",
        reference_value=ref["fps"],
        ratio=ours["fps"] / ref["fps"],
        aim=">= 0.9x",
        aim_ratio=0.9,
        extra=(f"{ours['frames']} frames in {ours['rounds_s']:.1f} s of rounds ({ours['seconds']:.1f} s with the exports) "
               f"after a {ours['start_s']:.1f} s start, peak RSS "
               f"{ours['rss_mb']:.0f} MB, {ours['points']:,} points in the exported cloud "
               f"(reference: {ref['seconds']:.1f} s, {ref['rss_mb']:.0f} MB); " + _exports(ours["exports"])),
    )
