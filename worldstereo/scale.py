"""One scale for depth and camera paths: find the point a path orbits and match the depth to it.

Camera files are made for a particular depth scale. The reference pipeline's files put the orbit
pivot on the first camera's optical axis at the scene's depth there (images kind: frame 0 is
``[I | (0, 0, d0)]`` and the path turns around the world origin; renders kind: the optical axes of
the path meet at that point). A depth map at another scale (an approximate prior, a relative
estimate) makes the camera orbit an empty point or fly through the scene. :func:`path_pivot` finds
the pivot, :func:`scale_to_pivot` the factor that puts the scene's robust depth at the pivot's
pixel onto the pivot's depth.

Cameras are world-to-camera, OpenCV axes; depth is camera z, 0 = unknown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.camera import CameraParameters

__all__ = ["PathPivot", "ScaleAlignment", "path_pivot", "robust_depth_at", "scale_to_pivot"]

# The optical axes must converge: the smallest eigenvalue of mean(I - d d^T) (0 for parallel axes,
# up to 2/3 for axes spread in every direction) above this value (axes ~8 degrees apart and more).
MIN_AXIS_SPREAD = 0.02
# ... and meet: mean distance of the axes from the least-squares point below this share of its depth.
MAX_AXIS_RESIDUAL = 0.1
# Half size of the window (share of the image's shorter side) whose median depth is the scene's depth at the pivot.
PIVOT_WINDOW = 0.05


@dataclass(frozen=True)
class PathPivot:
    """The point a camera path orbits.

    Attributes:
        point: (3,) world point (float64 numpy).
        depth: its camera z in the path's first camera (> 0).
        pixel: (2,) its pixel (x, y) in the first camera.
        kind: ``origin`` (first pose ``[I | t]``: the world origin) or ``axes`` (where the optical axes meet).
    """

    point: np.ndarray
    depth: float
    pixel: np.ndarray
    kind: str


@dataclass(frozen=True)
class ScaleAlignment:
    """The outcome of :func:`scale_to_pivot`: ``factor`` (1.0 when nothing was changed) and why."""

    factor: float
    pivot: PathPivot | None
    scene_depth_at_pivot: float | None
    message: str


def _first_pose(cameras: CameraParameters) -> tuple[np.ndarray, np.ndarray]:
    E = cameras.extrinsics[0].detach().double().cpu().numpy()
    return E[:3, :3], E[:3, 3]


def path_pivot(cameras: CameraParameters) -> PathPivot | None:
    """The pivot of a path, or None when the path orbits no point in front of its first camera.

    Rules, in order: a first pose ``[I | (0, 0, d)]`` with ``d > 0`` (the official images kind)
    orbits the world origin; otherwise the least-squares point nearest all optical axes, when the axes spread
    (not a pure translation) and meet (small residual). The pivot must lie in front of the first
    camera and project inside its image.

    Args:
        cameras: the path (N >= 1 cameras, world-to-camera).
    """
    R0, t0 = _first_pose(cameras)
    E = cameras.extrinsics.detach().double().cpu().numpy()
    point: np.ndarray | None = None
    kind = ""
    if np.allclose(R0, np.eye(3), atol=1e-6) and t0[2] > 0 and np.hypot(t0[0], t0[1]) <= 1e-6 * t0[2]:
        point, kind = np.zeros(3), "origin"
    elif len(E) >= 2:
        R, t = E[:, :3, :3], E[:, :3, 3]
        centres = -np.einsum("nji,nj->ni", R, t)
        dirs = R[:, 2, :]  # optical axes in world coordinates
        P = np.eye(3)[None] - dirs[:, :, None] * dirs[:, None, :]  # projectors orthogonal to each axis
        A = P.mean(axis=0)
        b = np.einsum("nij,nj->i", P, centres) / len(E)
        if np.linalg.eigvalsh(A)[0] >= MIN_AXIS_SPREAD:
            p = np.linalg.solve(A, b)
            residual = np.linalg.norm(np.einsum("nij,nj->ni", P, p[None] - centres), axis=1).mean()
            z = float((R0 @ p + t0)[2])
            if z > 0 and residual <= MAX_AXIS_RESIDUAL * z:
                point, kind = p, "axes"
    if point is None:
        return None
    cam_pt = R0 @ point + t0
    z = float(cam_pt[2])
    if not z > 0:
        return None
    K = cameras.intrinsics[0].detach().double().cpu().numpy()
    pixel = (K @ (cam_pt / z))[:2]
    if not (0 <= pixel[0] < cameras.width and 0 <= pixel[1] < cameras.height):
        return None
    return PathPivot(point=point, depth=z, pixel=pixel, kind=kind)


def robust_depth_at(depth: torch.Tensor, pixel: np.ndarray, window: float = PIVOT_WINDOW) -> float | None:
    """Median of the known depth in a square window around ``pixel`` (growing until some is known).

    Args:
        depth: (..., H, W) camera z, 0 = unknown.
        pixel: (x, y) in pixels of that map.
    Returns:
        the median, or None when the map holds no depth.
    """
    d = depth.reshape(depth.shape[-2], depth.shape[-1])
    h, w = d.shape
    x, y = int(math.floor(pixel[0])), int(math.floor(pixel[1]))
    r = max(1, int(round(window * min(h, w))))
    while True:
        patch = d[max(0, y - r) : y + r + 1, max(0, x - r) : x + r + 1]
        valid = patch[patch > 0]
        if valid.numel():
            return float(valid.median())
        if r >= max(h, w):
            return None
        r *= 2


def scale_to_pivot(depth: torch.Tensor, camera: CameraParameters, path: CameraParameters) -> ScaleAlignment:
    """The factor that brings ``depth`` (seen by ``camera``) to the scale of ``path``.

    Args:
        depth: (1, 1, H, W) camera z of the start image, 0 = unknown.
        camera: the start image's camera (B = 1, size W x H); the path's first camera sits there.
        path: the camera path the depth must match (any size: its first camera is rescaled to ``camera``'s).
    Returns:
        :class:`ScaleAlignment` (factor 1.0 with the reason when the path has no pivot).
    """
    if len(path) == 0:
        return ScaleAlignment(1.0, None, None, "scale unchanged: empty path")
    if (path.width, path.height) != (camera.width, camera.height):
        path = path.resized(camera.width, camera.height)
    pivot = path_pivot(path)
    if pivot is None:
        return ScaleAlignment(1.0, None, None, "scale unchanged: the path orbits no point in view")
    at = robust_depth_at(depth, pivot.pixel)
    if at is None or not at > 0:
        return ScaleAlignment(1.0, pivot, None, "scale unchanged: no depth at the path's pivot")
    factor = pivot.depth / at
    message = (
        f"depth scaled x{factor:.3g} so the scene at the path's pivot (pixel {pivot.pixel[0]:.0f}, {pivot.pixel[1]:.0f}) "
        f"lies at its depth {pivot.depth:.3g}"
    )
    return ScaleAlignment(float(factor), pivot, at, message)
