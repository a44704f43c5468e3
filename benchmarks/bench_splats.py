"""Splats of a 2M-point memory (:func:`worldstereo.splats.surfels_from_points`), and what they show.

Figure: seconds to make the surfels of 2,000,000 points (the room scene's surface seen from its start camera,
with the start camera as every point's observer; aim: at most 10 s). Reference, in the same process: the same
normals and spacings the plain way, a k-d tree queried on one thread and numpy's ``eigh`` per neighbourhood.

Also printed: at every frame of a world from each real photo shipped (bicycle and Caterpillar with their four
official paths, the dining room and the landscape with theirs; 9 frames each, 256 x 192, offline prior,
``warp`` + Telea), the splat render (:func:`worldstereo.splats.render_splats`) and the GGM's point render
(``splat_dense``, as the ``warp`` generator renders the memory) against the generated frame: PSNR and the share
of the frame covered (splats: accumulated opacity above 0.5; points: not a hole). Aim: splats cover at least
98% and are no worse in PSNR than the points.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import BenchResult

POINTS = 2_000_000
#: the real photos the render comparison builds worlds of (the shipped examples)
EXAMPLES = ("bicycle", "Caterpillar", "assets/examples/images/photorealistic-indoor-dining_spaces-030",
            "assets/examples/images/photorealistic-outdoor-verdant_landscape-050")


def _reference(points: np.ndarray, k: int) -> float:
    from scipy.spatial import cKDTree

    t0 = time.perf_counter()
    _, idx = cKDTree(points).query(points, k=k + 1, workers=1)
    nb = points[idx]
    centred = nb - nb.mean(axis=1, keepdims=True)
    np.linalg.eigh(np.einsum("nki,nkj->nij", centred, centred))
    return time.perf_counter() - t0


def _render_figures(tmp: Path, example: str) -> tuple[list[float], list[float], list[float], list[float]]:
    """Per frame of ``example``'s world: splat PSNR, point-render PSNR, splat cover, point-render cover."""
    from PIL import Image

    from worldstereo.eval.metrics import psnr
    from worldstereo.geometry.dense_splat import splat_dense
    from worldstereo.splats import render_splats
    from worldstereo.splats.sources import load_context, splats_from_context
    from worldstereo.world.dataset import read_dataset

    world = tmp / Path(example).name
    subprocess.run([sys.executable, "-m", "worldstereo.cli", "world", "--example", example, "--size", "256x192",
                    "--frames", "9", "--depth-backend", "prior", "--fill", "telea", "--no-ray", "--no-mesh",
                    "--quiet", "--out", str(world)], check=True)
    ctx = load_context(world / "state" / "current")
    g, _ = splats_from_context(ctx)
    ps, pp, cs, cp = [], [], [], []
    for f in read_dataset(world / "world"):
        cam = f.camera.to(dtype=torch.float32)
        image = torch.from_numpy(np.asarray(Image.open(f.image_path).convert("RGB"), np.float32) / 255).permute(2, 0, 1)
        r = render_splats(g, cam)
        pr = splat_dense(ctx.ggm.point_cloud, ctx.ggm.point_colors, cam, levels=2)
        ps.append(psnr(r.rgb.permute(2, 0, 1), image))
        pp.append(psnr(pr.image[0], image))
        cs.append(float((r.alpha > 0.5).float().mean()))
        cp.append(float((~pr.hole_mask[0, 0]).float().mean()))
    return ps, pp, cs, cp


def _render_summary(tmp: Path) -> str:
    parts = []
    for example in EXAMPLES:
        ps, pp, cs, cp = _render_figures(tmp, example)
        parts.append(f"{Path(example).name} ({len(ps)} frames): splats {np.mean(ps):.2f} dB, cover "
                     f"{100 * np.mean(cs):.1f}% (least {100 * np.min(cs):.1f}%); points {np.mean(pp):.2f} dB, cover "
                     f"{100 * np.mean(cp):.1f}% (least {100 * np.min(cp):.1f}%)")
    return "; ".join(parts)


def run() -> BenchResult:
    from worldstereo.scenes import get_scene
    from worldstereo.splats import surfels_from_points
    from worldstereo.splats.surfels import NEIGHBOURS

    scene = get_scene("room")
    sample = scene.sample_surface(POINTS)
    centre = scene.start_camera(512, 384).camera_centers[0].float()
    focal = float(scene.start_camera(512, 384).K[0, 0, 0])
    observers = centre.expand(POINTS, 3).contiguous()
    conf = torch.ones(POINTS)
    t0 = time.perf_counter()
    g, info = surfels_from_points(sample.points, sample.colors, conf, observers, focal)
    ours = time.perf_counter() - t0
    ref = _reference(sample.points.numpy().astype(np.float64), NEIGHBOURS)
    with tempfile.TemporaryDirectory() as tmp:
        extra = _render_summary(Path(tmp))
    return BenchResult(
        name="splats",
        value=ours,
        unit="s",
        reference="one-thread k-d tree + numpy eigh per neighbourhood (normals only)",
        reference_value=ref,
        ratio=ref / ours,
        aim="<= 10 s",
        aim_max=10.0,
        extra=f"{len(g):,} splats, median radius {info.median_radius:.4f}; {extra}",
    )
