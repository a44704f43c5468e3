"""How much two cameras see of the same space: frustum overlap and optical-axis angle.

Used for reference-view selection (score = overlap x angle penalty, DESIGN.md).
"""

from __future__ import annotations

import math

import torch

from worldstereo.camera import CameraParameters

__all__ = ["frustum_overlap", "frustum_samples", "view_angle"]

# Sample points projected per step of frustum_overlap (bounds its memory).
_POINTS_PER_STEP = 1 << 20


def _check_cameras(name: str, cameras: CameraParameters) -> None:
    if not isinstance(cameras, CameraParameters):
        raise ValueError(f"{name} must be a CameraParameters, got {type(cameras).__name__}")


def frustum_samples(
    cameras: CameraParameters, near: float, far: float, num_samples: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Deterministic stratified samples of each camera's view volume between ``near`` and ``far``.

    A regular ``num_samples^3`` grid at the cell centres of (column, row, depth): pixel
    coordinates ``u = (i + 0.5) / n * W``, ``v = (j + 0.5) / n * H`` and depths
    ``z = near + (k + 0.5) / n * (far - near)``.

    Returns:
        points: (B, S, 3) float32 world points, ``S = num_samples^3``.
        weights: (S,) float32 volume weights ``z^2 / sum(z^2)`` (the frustum's volume element is
            proportional to ``z^2 du dv dz``), summing to 1.
    """
    n = num_samples
    dev = cameras.device
    cells = (torch.arange(n, dtype=torch.float64, device=dev) + 0.5) / n
    z, v, u = torch.meshgrid(
        near + cells * (far - near), cells * cameras.height, cells * cameras.width, indexing="ij"
    )
    u, v, z = u.reshape(-1), v.reshape(-1), z.reshape(-1)
    K = cameras.intrinsics.double()
    fx, fy = K[:, 0, 0, None], K[:, 1, 1, None]
    cx, cy, s = K[:, 0, 2, None], K[:, 1, 2, None], K[:, 0, 1, None]
    y = (v - cy) / fy
    x = (u - cx - s * y) / fx
    cam = torch.stack([x * z, y * z, z.expand_as(x)], dim=-1)  # (B, S, 3) camera frame
    c2w = cameras.c2w.double()
    world = cam @ c2w[:, :3, :3].transpose(1, 2) + c2w[:, None, :3, 3]
    w = z * z
    return world.to(torch.float32), (w / w.sum()).to(torch.float32)


def frustum_overlap(
    cameras_a: CameraParameters,
    cameras_b: CameraParameters,
    near: float = 0.1,
    far: float = 10.0,
    num_samples: int = 16,
) -> torch.Tensor:
    """Fraction of each camera a's view volume that camera b sees.

    Camera a's frustum between ``near`` and ``far`` is sampled by :func:`frustum_samples`; a
    sample counts as seen by b when it projects inside b's image (``0 <= u < W_b``,
    ``0 <= v < H_b``) at a depth within b's ``[near, far]``. Samples are weighted by volume, so
    the result estimates the volume fraction. Not symmetric in general.

    Args:
        cameras_a: A cameras.
        cameras_b: B cameras (any image size).
        near, far: view-volume depth range in scene units, ``0 < near < far``, for both.
        num_samples: samples per axis (``num_samples^3`` per camera), >= 1.
    Returns:
        (A, B) float32 in [0, 1]: 1 for identical cameras, 0 for cameras looking apart.
    """
    _check_cameras("cameras_a", cameras_a)
    _check_cameras("cameras_b", cameras_b)
    for name, value in (("near", near), ("far", far)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number, got {value!r}")
    if not 0 < near < far:
        raise ValueError(f"near and far must satisfy 0 < near < far, got near={near}, far={far}")
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be a positive integer, got {num_samples!r}")

    cameras_b = cameras_b.to(cameras_a.device)
    points, weights = frustum_samples(cameras_a, near, far, num_samples)  # (A, S, 3), (S,)
    A, S = points.shape[:2]
    E = cameras_b.extrinsics.double()
    K = cameras_b.intrinsics.double()
    out = torch.empty(A, len(cameras_b), dtype=torch.float32, device=points.device)
    step = max(1, _POINTS_PER_STEP // max(1, S * len(cameras_b)))
    for start in range(0, A, step):
        pts = points[start : start + step].double().reshape(-1, 3)  # (a*S, 3)
        cam = torch.einsum("bij,nj->bni", E[:, :3, :3], pts) + E[:, None, :3, 3]  # (B, a*S, 3)
        z = cam[..., 2]
        z_safe = torch.where(z > 0, z, 1.0)
        x, y = cam[..., 0] / z_safe, cam[..., 1] / z_safe
        u = K[:, 0, 0, None] * x + K[:, 0, 1, None] * y + K[:, 0, 2, None]
        v = K[:, 1, 1, None] * y + K[:, 1, 2, None]
        seen = (
            (z >= near) & (z <= far)
            & (u >= 0) & (u < cameras_b.width) & (v >= 0) & (v < cameras_b.height)
        )  # (B, a*S)
        seen = seen.view(len(cameras_b), -1, S).to(weights.dtype)
        out[start : start + step] = (seen @ weights).T
    return out.clamp_(0.0, 1.0)


def view_angle(cameras_a: CameraParameters, cameras_b: CameraParameters) -> torch.Tensor:
    """(A, B) angle in radians, in [0, pi], between the optical axes (camera +z) of a and b."""
    _check_cameras("cameras_a", cameras_a)
    _check_cameras("cameras_b", cameras_b)
    # The optical axis in world coordinates is R^T e_z: the third row of the world-to-camera R.
    za = cameras_a.extrinsics[:, 2, :3].double()
    zb = cameras_b.extrinsics[:, 2, :3].double().to(za.device)
    za = za / za.norm(dim=-1, keepdim=True)
    zb = zb / zb.norm(dim=-1, keepdim=True)
    dot = za @ zb.T
    cross = torch.linalg.cross(za[:, None, :].expand(-1, len(zb), -1), zb[None].expand(len(za), -1, -1))
    return torch.atan2(cross.norm(dim=-1), dot).to(torch.float32)
