"""Ground-truth visibility between cameras: revisited regions and cross-view correspondence.

Everything here uses exact depth maps (a procedural scene's renders). A world point is *visible* in a
camera when it projects inside the image, in front of the camera, and its camera z agrees with the
camera's true depth at that pixel within a relative tolerance (i.e. it is the first surface hit, not
occluded). Depth 0 means "no surface" (sky) and never matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worldstereo.camera import CameraParameters

__all__ = [
    "DEFAULT_DEPTH_TOLERANCE",
    "Correspondence",
    "correspondence",
    "cross_view_error",
    "revisited_masks",
    "sample_bilinear",
    "visible_in",
]

#: Relative depth tolerance of the visibility test (|z - depth| <= tol * z).
DEFAULT_DEPTH_TOLERANCE = 0.015


def _check_depths(cameras: CameraParameters, depths: torch.Tensor) -> torch.Tensor:
    if not isinstance(cameras, CameraParameters):
        raise ValueError(f"cameras must be CameraParameters, got {type(cameras).__name__}")
    if not isinstance(depths, torch.Tensor) or depths.ndim != 4 or depths.shape[1] != 1:
        raise ValueError(f"depths must be a (B, 1, H, W) tensor, got {getattr(depths, 'shape', type(depths))}")
    if depths.shape[0] != len(cameras) or depths.shape[-2:] != (cameras.height, cameras.width):
        raise ValueError(
            f"depths {tuple(depths.shape)} do not match {len(cameras)} cameras of size {cameras.width}x{cameras.height}"
        )
    return depths.float()


def _depth_at(depth: torch.Tensor, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Depth (B, N) of the pixels holding continuous coordinates (B, N) (clamped to the image)."""
    B, _, H, W = depth.shape
    ui = u.floor().long().clamp(0, W - 1)
    vi = v.floor().long().clamp(0, H - 1)
    flat = depth.reshape(B, H * W)
    return torch.gather(flat, 1, vi * W + ui)


def visible_in(
    points: torch.Tensor,
    cameras: CameraParameters,
    depths: torch.Tensor,
    rel_tol: float = DEFAULT_DEPTH_TOLERANCE,
    chunk_cameras: int = 8,
) -> torch.Tensor:
    """Which world points each camera sees.

    Args:
        points: (N, 3) world points.
        cameras: B cameras.
        depths: (B, 1, H, W) their true depth maps (0 = nothing).
        rel_tol: relative depth tolerance.
        chunk_cameras: cameras projected at a time (bounds memory).
    Returns:
        (B, N) bool.
    """
    depths = _check_depths(cameras, depths)
    if not isinstance(points, torch.Tensor) or points.ndim != 2 or points.shape[-1] != 3:
        raise ValueError(f"points must be an (N, 3) tensor, got {getattr(points, 'shape', type(points))}")
    out = []
    W, H = cameras.width, cameras.height
    for s in range(0, len(cameras), chunk_cameras):
        cams = cameras[s : s + chunk_cameras]
        uv, z = cams.project(points.to(cams.dtype))
        u, v = uv[..., 0], uv[..., 1]
        inside = (u >= 0) & (u < W) & (v >= 0) & (v < H) & (z > 0)
        d = _depth_at(depths[s : s + chunk_cameras], u, v)
        out.append(inside & (d > 0) & ((z - d).abs() <= rel_tol * z))
    return torch.cat(out)


def revisited_masks(
    cameras: CameraParameters, depths: torch.Tensor, rel_tol: float = DEFAULT_DEPTH_TOLERANCE, chunk_cameras: int = 8
) -> torch.Tensor:
    """Revisited region of every frame of an exploration, in order.

    Pixel (i, j) of frame t is *revisited* when its true surface point was visible in one of the
    frames 0 .. t-1 (frame 0 is the input view, so its mask is empty).

    Args:
        cameras: T cameras in exploration order (input view first).
        depths: (T, 1, H, W) true depths.
    Returns:
        (T, 1, H, W) bool, True = revisited.
    """
    depths = _check_depths(cameras, depths)
    T, _, H, W = depths.shape
    out = torch.zeros(T, 1, H, W, dtype=torch.bool)
    if T < 2:
        return out
    points = cameras.unproject(depths)  # (T, H, W, 3)
    for t in range(1, T):
        valid = depths[t, 0].reshape(-1) > 0
        pts = points[t].reshape(-1, 3)[valid]
        seen = torch.zeros(pts.shape[0], dtype=torch.bool)
        for s in range(0, t, chunk_cameras):
            todo = ~seen
            if not bool(todo.any()):
                break
            e = min(s + chunk_cameras, t)
            vis = visible_in(pts[todo], cameras[s:e], depths[s:e], rel_tol, chunk_cameras).any(0)
            seen[todo] = vis
        mask = torch.zeros(H * W, dtype=torch.bool)
        mask[valid] = seen
        out[t, 0] = mask.reshape(H, W)
    return out


@dataclass(frozen=True)
class Correspondence:
    """Where the pixels of view A land in view B, from true depth.

    Attributes:
        mask: (H, W) bool, True where A's true surface point is visible in B (at all four pixels
            around its projection, so bilinear sampling does not mix surfaces).
        uv: (H, W, 2) continuous pixel coordinates ``(u, v)`` of A's pixels in B (meaningful under ``mask``).
    """

    mask: torch.Tensor
    uv: torch.Tensor

    @property
    def count(self) -> int:
        return int(self.mask.sum())


def correspondence(
    camera_a: CameraParameters,
    depth_a: torch.Tensor,
    camera_b: CameraParameters,
    depth_b: torch.Tensor,
    rel_tol: float = DEFAULT_DEPTH_TOLERANCE,
) -> Correspondence:
    """Ground-truth correspondence from view A into view B.

    Args:
        camera_a, camera_b: one camera each (B = 1), same image size.
        depth_a, depth_b: (1, 1, H, W) or (1, H, W) true depths.
    Returns:
        :class:`Correspondence` on A's pixel grid.
    """
    if len(camera_a) != 1 or len(camera_b) != 1:
        raise ValueError("camera_a and camera_b must each hold one camera")
    da = _check_depths(camera_a, depth_a.reshape(1, 1, *depth_a.shape[-2:]))
    db = _check_depths(camera_b, depth_b.reshape(1, 1, *depth_b.shape[-2:]))
    H, W = da.shape[-2:]
    pts = camera_a.unproject(da)[0].reshape(-1, 3)
    uv, z = camera_b.project(pts.to(camera_b.dtype))
    u, v, z = uv[0, :, 0], uv[0, :, 1], z[0]
    Wb, Hb = camera_b.width, camera_b.height
    ok = (da[0, 0].reshape(-1) > 0) & (z > 0) & (u >= 0) & (u < Wb) & (v >= 0) & (v < Hb)
    # the four pixels whose centres surround (u, v) must all hold this surface
    u0, v0 = u - 0.5, v - 0.5
    for du in (0.0, 1.0):
        for dv in (0.0, 1.0):
            uu = (u0.floor() + du).clamp(0, Wb - 1) + 0.5
            vv = (v0.floor() + dv).clamp(0, Hb - 1) + 0.5
            d = _depth_at(db, uu.unsqueeze(0), vv.unsqueeze(0))[0]
            ok &= (d > 0) & ((z - d).abs() <= rel_tol * z)
    return Correspondence(mask=ok.reshape(H, W), uv=uv[0].reshape(H, W, 2).float())


def sample_bilinear(image: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinear colour of ``image`` (C, H, W) at continuous pixel coordinates ``uv`` (N, 2) -> (C, N).

    Pixel centres are at +0.5; coordinates beyond the outer centres take the border pixel.
    """
    C, H, W = image.shape
    grid = torch.stack([uv[:, 0] / W * 2 - 1, uv[:, 1] / H * 2 - 1], dim=-1).view(1, 1, -1, 2)
    out = F.grid_sample(image.unsqueeze(0).float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=False)
    return out[0, :, 0]


def cross_view_error(image_a: torch.Tensor, image_b: torch.Tensor, corr: Correspondence) -> tuple[float, int]:
    """Squared colour error between view A and view B sampled at A's correspondences.

    Args:
        image_a, image_b: (3, H, W) images of the two views.
        corr: :func:`correspondence` from A into B.
    Returns:
        (sum of squared errors over the 3 channels of the matched pixels, number of matched pixels);
        the consistency PSNR of a set of pairs is ``psnr_from_mse(sum_sse / (3 * sum_count))``.
    """
    if image_a.shape != image_b.shape or image_a.ndim != 3:
        raise ValueError(f"image_a and image_b must be (3, H, W) of one size, got {tuple(image_a.shape)}, {tuple(image_b.shape)}")
    m = corr.mask.reshape(-1)
    n = int(m.sum())
    if n == 0:
        return 0.0, 0
    a = image_a.float().reshape(image_a.shape[0], -1)[:, m]
    b = sample_bilinear(image_b, corr.uv.reshape(-1, 2)[m])
    return float((a - b).pow(2).sum()), n
