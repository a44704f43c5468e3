"""A world's dataset for 3D Gaussian splatting trainers: ``images/``, ``depths/``, ``transforms.json``, ``pointcloud.ply``.

``transforms.json`` follows nerfstudio's data format: shared pinhole intrinsics ``fl_x``, ``fl_y``,
``cx``, ``cy``, ``w``, ``h`` (a frame whose intrinsics differ carries its own), and per frame
``file_path``, ``depth_file_path`` and ``transform_matrix``: camera-to-world with nerfstudio's
(OpenGL) camera axes, x right, y up, z back, i.e. this project's OpenCV pose with its y and z
columns negated. ``ply_file_path`` names the point cloud for splat initialisation, and
``depth_unit_scale_factor`` (0.001) says the 16-bit depth PNGs hold millimetres (0 = unknown).

``pointcloud.ply`` is the GGM after the plan, voxel-downsampled to at most :data:`POINT_BUDGET`
points: the voxel side doubles from the GGM's merge distance until the budget holds, and each
voxel keeps the mean position and colour of its points.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import torch

from worldstereo.atomic import write_text_atomic
from worldstereo.camera import CameraParameters, opencv_to_opengl
from worldstereo.formats import write_point_cloud

__all__ = ["DEPTH_UNIT", "POINT_BUDGET", "frame_entry", "voxel_downsample", "write_point_cloud_budget", "write_transforms"]

#: most points of the exported cloud
POINT_BUDGET = 2_000_000
#: scene units per depth PNG count (millimetres: :data:`worldstereo.exports.DEPTH_PNG_SCALE` counts per unit)
DEPTH_UNIT = 0.001


def voxel_downsample(points: torch.Tensor, colors: torch.Tensor, voxel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean position and colour per occupied voxel of side ``voxel``: (N, 3), (N, 3) -> (M, 3), (M, 3), M <= N."""
    keys = torch.floor(points.double() / voxel).long()
    _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    m = counts.shape[0]
    pos = torch.zeros(m, 3, dtype=torch.float64).index_add_(0, inverse, points.double()) / counts[:, None]
    col = torch.zeros(m, 3, dtype=torch.float64).index_add_(0, inverse, colors.double()) / counts[:, None]
    return pos.float(), col.float()


def write_point_cloud_budget(path: str | os.PathLike, points: torch.Tensor, colors: torch.Tensor, start_voxel: float,
                             budget: int = POINT_BUDGET) -> tuple[Path, int, float]:
    """Write ``points`` voxel-downsampled to at most ``budget`` points; returns (path, points written, voxel side; 0 = none)."""
    voxel = 0.0
    pts, cols = points, colors
    if pts.shape[0] > budget:
        voxel = max(float(start_voxel), 1e-9)
        while True:
            pts, cols = voxel_downsample(points, colors, voxel)
            if pts.shape[0] <= budget:
                break
            voxel *= 2.0
    return write_point_cloud(path, pts, cols.clamp(0, 1)), int(pts.shape[0]), voxel


def frame_entry(file_path: str, depth_path: str, camera: CameraParameters) -> dict[str, Any]:
    """One ``frames`` item of ``transforms.json`` for ``camera`` (B = 1): paths and its OpenGL camera-to-world."""
    c2w = opencv_to_opengl(camera.c2w[0].double()).tolist()
    K = camera.K[0].double()
    return {
        "file_path": file_path,
        "depth_file_path": depth_path,
        "transform_matrix": c2w,
        "fl_x": float(K[0, 0]), "fl_y": float(K[1, 1]), "cx": float(K[0, 2]), "cy": float(K[1, 2]),
        "w": int(camera.width), "h": int(camera.height),
    }


def write_transforms(path: str | os.PathLike, frames: list[dict[str, Any]], ply_file: str) -> Path:
    """Write ``transforms.json``: the first frame's intrinsics shared, repeated only in frames that differ."""
    if not frames:
        raise ValueError("a dataset needs at least one frame")
    keys = ("fl_x", "fl_y", "cx", "cy", "w", "h")
    shared = {k: frames[0][k] for k in keys}
    out_frames = []
    for f in frames:
        item = {k: v for k, v in f.items() if k not in keys}
        if any(not math.isclose(f[k], shared[k], rel_tol=1e-6) for k in keys):
            item.update({k: f[k] for k in keys})
        out_frames.append(item)
    data = {"camera_model": "OPENCV", **shared, "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
            "depth_unit_scale_factor": DEPTH_UNIT, "ply_file_path": ply_file, "frames": out_frames}
    return write_text_atomic(Path(path), json.dumps(data, indent=1) + "\n")
