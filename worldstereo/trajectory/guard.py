"""The collision guard: a preset shrunk until its cameras keep a clearance from known geometry."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree

from worldstereo.camera import CameraParameters
from worldstereo.trajectory.presets import _run_preset, _start_of, _to_cameras

__all__ = ["GuardedPath", "guarded_preset"]


@dataclass(frozen=True)
class GuardedPath:
    """A preset move after the collision guard.

    Attributes:
        cameras: the (possibly shortened) cameras, ``num_frames`` of them.
        shortened: True if the full move came closer than ``clearance`` to the point cloud.
        scale: fraction of the requested motion amount kept (1.0 = unchanged, 0.0 = the camera stays put).
        clearance: the distance threshold used (scene units).
        min_distance: closest approach of the returned path's camera centres to the points.
        message: a sentence for the user.
    """

    cameras: CameraParameters
    shortened: bool
    scale: float
    clearance: float
    min_distance: float
    message: str


def _path_clearance(tree: cKDTree, c2w: np.ndarray) -> float:
    centres = c2w[:, :3, 3]
    # also test the midpoints, so a fast move cannot jump over thin geometry between two frames
    mids = 0.5 * (centres[1:] + centres[:-1])
    dist, _ = tree.query(np.concatenate([centres, mids]) if len(mids) else centres)
    return float(np.min(dist))


def guarded_preset(
    name: str,
    start_camera: CameraParameters,
    num_frames: int,
    scene_depth: float,
    points: Any,
    clearance: float | None = None,
    axes: Any = None,
    **params: Any,
) -> GuardedPath:
    """:func:`preset`, shortened where the move would pass through the known geometry.

    The motion amount (angles, distances) is scaled down by bisection until every sampled camera centre (and
    every midpoint between consecutive centres) keeps at least ``clearance`` from ``points``.

    Args:
        points: (N, 3) world points of the known geometry (e.g. the global point cloud).
        clearance: minimum distance in scene units; default ``0.05 * scene_depth``.
    """
    start = _start_of(start_camera, scene_depth, axes)
    pts = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points contains NaN or inf values")
    clear = 0.05 * start.depth if clearance is None else float(clearance)
    if not math.isfinite(clear) or clear < 0:
        raise ValueError(f"clearance must be a non-negative number, got {clearance!r}")
    n_check = max(4 * (int(num_frames) - 1) + 1, 2)
    full = _run_preset(name, start, num_frames, 1.0, params)
    if len(pts) == 0:
        return GuardedPath(_to_cameras(full, start_camera), False, 1.0, clear, math.inf, "no geometry to avoid")
    tree = cKDTree(pts)

    def safe(scale: float) -> bool:
        return _path_clearance(tree, _run_preset(name, start, n_check, scale, params)) >= clear

    if safe(1.0):
        d = _path_clearance(tree, full)
        return GuardedPath(_to_cameras(full, start_camera), False, 1.0, clear, d, "path is clear of the geometry")
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if safe(mid) else (lo, mid)
    c2w = _run_preset(name, start, num_frames, lo, params)
    d = _path_clearance(tree, c2w)
    msg = (
        f"{name}: the full move passes within {clear:.3g} of the scene geometry; "
        f"shortened to {100 * lo:.0f}% of its extent"
    )
    if lo == 0.0:
        msg = f"{name}: the start camera is already within {clear:.3g} of the geometry; the camera stays put"
    return GuardedPath(_to_cameras(c2w, start_camera), True, lo, clear, d, msg)
