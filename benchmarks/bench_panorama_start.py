"""Start from the official 27-view bank at 832 x 480 with the offline prior: seconds and peak RSS.

Ours: ``WorldStereo.start_views`` at the default working size (512 x 384): the room prior for every
view, the views partitioned over the sphere and merged into the GGM one by one (about 0.7M points),
27 keyframes into the SSM (enlarged to hold them), the start view resampled. The bank's pixels are a
smooth random texture (the time does not depend on them). The reference is what the same start costs
without the partition: every view lifted whole (10.8M points) and merged into a GGM one by one.
Each runs in a fresh process so that its peak RSS is its own.
"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.common import BenchResult

_START = r"""
import json, resource, sys, time
import cv2, numpy as np, torch
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.panorama.bank import official_bank_cameras
from worldstereo.panorama.depth import box_prior_depths
from worldstereo.runtime import keep_freed_memory
keep_freed_memory()
rng = np.random.default_rng(0)
cams = official_bank_cameras()
views = np.stack([cv2.resize(rng.integers(0, 256, (30, 52, 3), dtype=np.uint8), (832, 480)) for _ in range(27)])
mode = sys.argv[1]
t0 = time.perf_counter()
if mode == "ours":
    model = WorldStereo(WorldStereoConfig(depth_backend="prior", generator="warp", fill="telea"))
    model.start_views(views, cams)
    points = model.ggm.num_points
else:
    from worldstereo.memory.global_geometric import GlobalGeometricMemory
    depths = box_prior_depths(cams)
    ggm = GlobalGeometricMemory(point_cloud_dim=32, feature_dim=64, max_points=12_000_000)
    imgs = torch.from_numpy(views).permute(0, 3, 1, 2).float() / 255
    c = cams.to(dtype=torch.float32)
    for i in range(27):
        pts = c[i].unproject(depths[i : i + 1])[0].reshape(-1, 3)
        cols = imgs[i].permute(1, 2, 0).reshape(-1, 3)
        if i == 0:
            ggm.initialize(pts, colors=cols)
        else:
            ggm.update(pts, c.w2c[i], colors=cols, merge_threshold=1.5 * 2.5 / 192)
    points = ggm.num_points
seconds = time.perf_counter() - t0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"seconds": seconds, "rss_mb": rss_mb, "points": points}))
"""


def _run(mode: str) -> dict:
    out = subprocess.run([sys.executable, "-c", _START, mode], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run() -> BenchResult:
    ref = _run("reference")
    ours = _run("ours")
    return BenchResult(
        name="panorama_start",
        value=ours["seconds"],
        unit="s",
        reference="every view lifted whole and merged",
        reference_value=ref["seconds"],
        ratio=ref["seconds"] / ours["seconds"],
        aim_max=10.0,
        aim="<= 10 s, peak RSS <= 4 GB",
        extra=(f"peak RSS {ours['rss_mb']:.0f} MB, {ours['points']:,} GGM points "
               f"(reference: {ref['rss_mb']:.0f} MB, {ref['points']:,} points)"),
    )
