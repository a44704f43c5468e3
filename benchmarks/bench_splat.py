"""Splat 1M coloured points into one 512x384 camera (radius 0): ours vs the reference z-buffer.

The reference is ``splat_points_reference``: the plain torch version, sorting all fragments by
(pixel, depth, id) and writing the first of each pixel. The even more naive "sort by depth
descending, ``index_put`` the ids so the nearest write lands last" is not a valid reference: torch
does not order duplicate-index writes in ``index_put_``, and with 2 CPU threads it got ~85 % of
the pixels wrong here (it is correct only single-threaded).
"""

from __future__ import annotations

import math

import torch

from benchmarks.common import BenchResult, time_ms
from worldstereo.camera import CameraParameters
from worldstereo.geometry import splat_points, splat_points_reference

WIDTH, HEIGHT = 512, 384
NUM_POINTS = 1_000_000


def scene(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, CameraParameters]:
    """(N, 3) world points all inside the camera's view, (N, 3) colours, the camera."""
    g = torch.Generator().manual_seed(seed)
    cam = CameraParameters.look_at(
        [0.5, -1.0, -2.0], [0.0, 0.0, 3.0], fov_y=math.radians(60), width=WIDTH, height=HEIGHT
    )
    depth = 1.0 + 9.0 * torch.rand(1, 1, HEIGHT, WIDTH, generator=g)
    # Random sub-pixel positions: lift random (u, v, z) through the camera.
    uv = torch.rand(NUM_POINTS, 2, generator=g) * torch.tensor([WIDTH, HEIGHT])
    z = depth.reshape(-1)[torch.randint(0, WIDTH * HEIGHT, (NUM_POINTS,), generator=g)]
    K = cam.intrinsics[0]
    x = (uv[:, 0] - K[0, 2]) / K[0, 0] * z
    y = (uv[:, 1] - K[1, 2]) / K[1, 1] * z
    cam_pts = torch.stack([x, y, z], dim=1)
    c2w = cam.c2w[0]
    points = (cam_pts @ c2w[:3, :3].T + c2w[:3, 3]).contiguous()
    colors = torch.rand(NUM_POINTS, 3, generator=g)
    return points, colors, cam


def run() -> BenchResult:
    points, colors, cam = scene()
    ours = time_ms(lambda: splat_points(points, colors, cam))
    ref = time_ms(lambda: splat_points_reference(points, colors, cam), repeats=3, warmup=1)
    # Sanity: both renders agree except for points within float rounding of a pixel boundary.
    agree = float(
        (splat_points(points, colors, cam).point_ids == splat_points_reference(points, colors, cam).point_ids)
        .float()
        .mean()
    )
    if agree < 0.999:
        raise RuntimeError(f"splat benchmark: ours and the reference agree on only {agree:.4%} of pixels")
    return BenchResult(
        name="splat",
        value=ours,
        unit="ms",
        reference="torch sort-based z-buffer (reference impl)",
        reference_value=ref,
        ratio=ref / ours,
        aim_max=15.0,
        aim="<= 15 ms",
    )
