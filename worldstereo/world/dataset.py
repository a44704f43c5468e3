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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worldstereo.atomic import write_text_atomic
from worldstereo.camera import CameraParameters, opencv_to_opengl, opengl_to_opencv
from worldstereo.formats import write_point_cloud

__all__ = [
    "DEPTH_UNIT",
    "INPUT_GROUPS",
    "POINT_BUDGET",
    "DatasetFrame",
    "frame_entry",
    "read_dataset",
    "voxel_downsample",
    "write_point_cloud_budget",
    "write_transforms",
]

#: most points of the exported cloud
POINT_BUDGET = 2_000_000
#: scene units per depth PNG count (millimetres: :data:`worldstereo.exports.DEPTH_PNG_SCALE` counts per unit)
DEPTH_UNIT = 0.001
#: file-name groups of the input views (``input_000``; a panorama's or posed views' ``view_NNNN``), not generated
INPUT_GROUPS = ("input", "view")
_INTRINSICS = ("fl_x", "fl_y", "cx", "cy", "w", "h")


def voxel_downsample(points: torch.Tensor, colors: torch.Tensor, voxel: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean position and colour per occupied voxel of side ``voxel``: (N, 3), (N, 3) -> (M, 3), (M, 3), M <= N."""
    keys = torch.floor(points.double() / voxel).long()
    _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    m = counts.shape[0]
    pos = torch.zeros(m, 3, dtype=torch.float64).index_add_(0, inverse, points.double()) / counts[:, None]
    col = torch.zeros(m, 3, dtype=torch.float64).index_add_(0, inverse, colors.double()) / counts[:, None]
    return pos.float(), col.float()


def write_point_cloud_budget(path: str | os.PathLike, points: torch.Tensor, colors: torch.Tensor, start_voxel: float,
                             budget: int = POINT_BUDGET) -> tuple[Path, torch.Tensor, torch.Tensor, float]:
    """Write ``points`` voxel-downsampled to at most ``budget`` points; returns (path, the points (M, 3) and colours
    (M, 3) written, voxel side; 0 = none)."""
    voxel = 0.0
    pts, cols = points, colors
    if pts.shape[0] > budget:
        voxel = max(float(start_voxel), 1e-9)
        while True:
            pts, cols = voxel_downsample(points, colors, voxel)
            if pts.shape[0] <= budget:
                break
            voxel *= 2.0
    cols = cols.clamp(0, 1)
    return write_point_cloud(path, pts, cols), pts, cols, voxel


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
    """Write ``transforms.json``: intrinsics at the top level when every frame shares them, else in every frame.

    (nerfstudio's parser reads per-frame intrinsics only where the top level has none.)
    """
    if not frames:
        raise ValueError("a dataset needs at least one frame")
    shared = {k: frames[0][k] for k in _INTRINSICS}
    same = all(math.isclose(f[k], shared[k], rel_tol=1e-6) for f in frames for k in _INTRINSICS)
    out_frames = [{k: v for k, v in f.items() if not (same and k in _INTRINSICS)} for f in frames]
    data = {"camera_model": "OPENCV", **(shared if same else {}), "k1": 0.0, "k2": 0.0, "p1": 0.0, "p2": 0.0,
            "depth_unit_scale_factor": DEPTH_UNIT, "ply_file_path": ply_file, "frames": out_frames}
    return write_text_atomic(Path(path), json.dumps(data, indent=1) + "\n")


@dataclass(frozen=True)
class DatasetFrame:
    """One frame of a dataset as a trainer reads it.

    Attributes:
        stem: the file name without suffix (``left_004``, ``input_000``, ``view_0003``).
        group: the trajectory (or input group) it belongs to: the stem without its ``_NNN`` counter.
        image_path, depth_path, mask_path: its files (depth and mask None where the dataset has none).
        camera: its camera (B = 1): world-to-camera in OpenCV axes, pixel intrinsics, its own size.
    """

    stem: str
    group: str
    image_path: Path
    depth_path: Path | None
    mask_path: Path | None
    camera: CameraParameters


def read_dataset(folder: str | os.PathLike) -> list[DatasetFrame]:
    """The frames of a dataset folder's ``transforms.json`` (shared or per-frame intrinsics), in file order.

    Raises:
        ValueError: no readable ``transforms.json``, or a frame without a pose or intrinsics.
    """
    from worldstereo.formats import read_json_file

    root = Path(folder)
    data = read_json_file(root / "transforms.json", 64 * 2**20, "transforms.json")
    if not isinstance(data, dict) or not isinstance(data.get("frames"), list):
        raise ValueError("transforms.json: expected an object with a 'frames' list")
    out = []
    for i, f in enumerate(data["frames"]):
        try:
            vals = {k: float(f[k]) if k in f else float(data[k]) for k in _INTRINSICS}
            c2w = torch.tensor(f["transform_matrix"], dtype=torch.float64)
            file_path = root / f["file_path"]
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"transforms.json frame {i}: missing or bad {exc}") from None
        if c2w.shape != (4, 4):
            raise ValueError(f"transforms.json frame {i}: transform_matrix must be 4x4")
        K = torch.tensor([[vals["fl_x"], 0, vals["cx"]], [0, vals["fl_y"], vals["cy"]], [0, 0, 1]], dtype=torch.float64)
        w2c = torch.linalg.inv(opengl_to_opencv(c2w))
        stem = Path(f["file_path"]).stem
        group = stem.rsplit("_", 1)[0] if "_" in stem else stem
        depth = root / f["depth_file_path"] if "depth_file_path" in f else None
        mask = root / f["mask_path"] if "mask_path" in f else None
        out.append(DatasetFrame(stem, group, file_path, depth, mask,
                                CameraParameters(K.unsqueeze(0), w2c.unsqueeze(0), int(vals["w"]), int(vals["h"]))))
    return out
