"""Views of one centre -> one point cloud and resampled views (what ``start_views`` seeds the memories from).

Views that share a centre see the same rays, so any of them can be resampled into any camera at
that centre exactly, whatever the depth (a homography per view). Where several views hold a
direction, the one whose optical axis is nearest to it (the least stretched) wins: the views
partition the sphere, and the point cloud holds each direction once, from its winning view.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from worldstereo.camera import CameraParameters

__all__ = [
    "co_centred",
    "lift_owned_pixels",
    "median_range",
    "owned_pixels",
    "resample_views",
    "sphere_directions",
    "start_camera_for",
]


def co_centred(cameras: CameraParameters, tolerance: float = 1e-4) -> bool:
    """Whether every camera sits at the first one's centre (within ``tolerance`` x the largest distance to it, or 1e-6)."""
    c = cameras.camera_centers.detach().double()
    spread = float((c - c[0]).norm(dim=-1).max())
    scale = max(float(c.norm(dim=-1).max()), 1.0)
    return spread <= max(tolerance * scale, 1e-6)


def _winners(directions: np.ndarray, cameras: CameraParameters) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For (..., 3) world directions: the winning view (-1 where none holds it) and its pixel (u, v)."""
    K = cameras.K.detach().cpu().double().numpy()
    R = cameras.w2c[:, :3, :3].detach().cpu().double().numpy()
    best = np.full(directions.shape[:-1], -np.inf)
    owner = np.full(directions.shape[:-1], -1, np.int64)
    uu = np.zeros(directions.shape[:-1])
    vv = np.zeros(directions.shape[:-1])
    norm = np.linalg.norm(directions, axis=-1).clip(1e-12)
    for i in range(len(cameras)):
        cam = directions @ R[i].T
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[i, 0, 0] * cam[..., 0] / z + K[i, 0, 2]
            v = K[i, 1, 1] * cam[..., 1] / z + K[i, 1, 2]
        inside = (z > 1e-9) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
        score = np.where(inside, z / norm, -np.inf)  # cosine to the optical axis
        take = score > best
        best = np.where(take, score, best)
        owner = np.where(take, i, owner)
        uu = np.where(take, u, uu)
        vv = np.where(take, v, vv)
    return owner, uu, vv


def resample_views(views: np.ndarray, cameras: CameraParameters, directions: np.ndarray, nearest: bool = False) -> np.ndarray:
    """Sample views of one centre along world ``directions`` (..., 3): each from its winning view; 0 where none holds it.

    Args:
        views: (N, h, w, C) or (N, h, w) images (or range maps) of ``cameras``.
        nearest: nearest-neighbour sampling (range maps, masks) instead of bilinear.
    """
    owner, u, v = _winners(directions, cameras)
    out = np.zeros(directions.shape[:-1] + views.shape[3:], views.dtype)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    for i in np.unique(owner[owner >= 0]):
        mine = owner == i
        mu = np.where(mine, u - 0.5, 0).astype(np.float32)
        mv = np.where(mine, v - 0.5, 0).astype(np.float32)
        sampled = cv2.remap(views[i], mu, mv, interp, borderMode=cv2.BORDER_REPLICATE)
        out[mine] = sampled[mine]
    return out


def sphere_directions(count: int) -> np.ndarray:
    """(count, 3) unit directions spread evenly over the sphere (a Fibonacci lattice: equal solid angle each)."""
    i = np.arange(count) + 0.5
    z = 1.0 - 2.0 * i / count
    phi = math.pi * (1.0 + math.sqrt(5.0)) * i
    r = np.sqrt(1.0 - z * z)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def median_range(depths: torch.Tensor, cameras: CameraParameters, samples: int = 20000) -> float:
    """Median distance from the centre of views of one centre over the sphere (each direction weighted by
    its solid angle, not by how many pixels hold it); directions no view holds, or of unknown depth, are left out.

    Args:
        depths: (N, 1, H, W) camera z, 0 = unknown.
    """
    d_cam = cameras.to(dtype=torch.float64)._camera_directions()  # (N, H, W, 3), z = 1
    ranges = (depths[:, 0].double() * d_cam.norm(dim=-1)).float().numpy()
    r = resample_views(ranges, cameras, sphere_directions(samples)[None], nearest=True)  # (1, samples): remap wants 2-D maps
    r = r[r > 0]
    return float(np.median(r)) if r.size else 0.0


def owned_pixels(cameras: CameraParameters) -> torch.Tensor:
    """(N, H, W) bool: the pixels of each view that it wins (views of one centre partition the sphere).

    A pixel of view ``i`` is won by ``i`` unless another view holds its direction nearer to its own
    optical axis (ties go to the lower index, as in :func:`resample_views`). Only views whose fields
    of view can overlap ``i``'s are checked; one compiled (serial) pass per view.
    """
    cams = cameras.to(dtype=torch.float64)
    K, R = cams.K.numpy(), cams.w2c[:, :3, :3].numpy()
    axes = R[:, 2]
    half_diag = np.arctan(np.hypot(0.5 * cams.width / K[:, 0, 0], 0.5 * cams.height / K[:, 1, 1]))
    d_cam = cams._camera_directions()  # (N, H, W, 3), camera z = 1
    from worldstereo.panorama.lift_kernels import owned_kernel  # numba: imported when first needed

    out = np.ones((len(cams), cams.height * cams.width), bool)
    for i in range(len(cams)):
        angle = np.arccos(np.clip(axes @ axes[i], -1.0, 1.0))
        js = np.array([j for j in np.flatnonzero(angle < half_diag + half_diag[i]) if j != i], np.int64)
        if js.size == 0:
            continue
        world = d_cam[i].reshape(-1, 3).numpy() @ cams.c2w[i, :3, :3].numpy().T
        owned_kernel(np.ascontiguousarray(world), np.ascontiguousarray(R[js]), np.ascontiguousarray(K[js]),
                      js < i, float(cams.width), float(cams.height), out[i])
    return torch.from_numpy(out.reshape(len(cams), cams.height, cams.width))


def lift_owned_pixels(
    images: torch.Tensor, depths: torch.Tensor, cameras: CameraParameters, owned: torch.Tensor, max_points: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], int]:
    """World points and colours of every view's owned pixels with known depth, at most ``max_points`` in all.

    Args:
        images: (N, 3, H, W) in [0, 1]; depths: (N, 1, H, W) camera z, 0 = unknown; owned: (N, H, W) bool.
    Returns:
        per view its points (P_i, 3) float32 and colours (P_i, 3), and the pixel stride used (1 = every
        pixel; a larger grid stride when the owned pixels are more than ``max_points``).
    """
    keep = owned & (depths[:, 0] > 0)
    total = int(keep.sum())
    stride = 1 if total <= max_points else math.ceil(math.sqrt(total / max_points))
    if stride > 1:
        grid = torch.zeros_like(keep)
        grid[:, ::stride, ::stride] = True
        keep = keep & grid
    pts, cols = [], []
    for i in range(len(cameras)):
        m = keep[i]
        p = cameras[i].unproject(depths[i : i + 1].to(cameras.dtype))[0]  # (H, W, 3)
        pts.append(p[m].float())
        cols.append(images[i].permute(1, 2, 0)[m].float())
    return pts, cols, stride


def start_camera_for(view: CameraParameters, width: int, height: int) -> CameraParameters:
    """The exploration camera at ``view``'s pose: ``width x height``, square pixels, ``view``'s vertical field of view.

    For the official bank at 832 x 480 this is the bank's own camera (90 degrees vertical, 120 horizontal).
    """
    fov_y = float(view.fov_y[0])
    f = 0.5 * height / math.tan(0.5 * fov_y)
    K = torch.tensor([[f, 0.0, width / 2], [0.0, f, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float32)
    return CameraParameters(K.unsqueeze(0), view.w2c[:1].float(), width, height)
