"""Z-buffer point splatting: render world points (and per-point values) into a batch of cameras.

Contract shared by :func:`splat_points` (fast) and :func:`splat_points_reference` (slow, obvious):

* the ``N`` world points are projected into each of the ``B`` cameras with the pinhole model of
  :meth:`CameraParameters.project`; a point with continuous pixel coordinates ``(u, v)`` lands in
  pixel ``(row floor(v), column floor(u))``;
* points with camera depth ``z < near`` or ``z > far`` are dropped (``far=None``: no far plane);
* with ``radius = r`` a point covers the ``(2r + 1) x (2r + 1)`` square of pixels centred on its
  pixel, all at the point's depth (pixels outside the image are skipped);
* z-buffer: in each pixel the point with the smallest camera depth wins. Depth is computed per
  point in float32 as ``((x r0 + y r1) + z r2) + t`` (the third row of the world-to-camera matrix,
  every operation rounded on its own), so identical points get identical depths wherever they sit
  in the input; equal depths go to the lower point index: the result is deterministic;
* the winner's values, depth and index are written; pixels no point reaches are holes.

The two functions agree exactly except for points within float rounding of a pixel boundary:
the fast one projects with ``K [R | t]`` folded into one matrix, so its ``u, v`` may differ from
``cameras.project`` in the last bits.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.camera import CameraParameters

__all__ = ["RenderOutput", "splat_points", "splat_points_reference"]

_INT64_MAX = torch.iinfo(torch.int64).max
# Point indices live in the low 32 bits of the z-buffer key; keep them positive as int32 too.
_MAX_POINTS = 2**31 - 1
# Point-camera pairs processed per block (each costs ~60 bytes of temporaries): on CPU small
# enough to stay mostly in cache, on GPU just a bound on memory.
_CPU_CHUNK = 1 << 17
_GPU_CHUNK = 1 << 24
# Flat pixel indices are computed in float32 while the buffer is smaller than this (exact).
_FLOAT_INDEX_LIMIT = 2**24


@dataclass(frozen=True)
class RenderOutput:
    """Result of splatting points into ``B`` cameras of size ``H x W``.

    Attributes:
        image: (B, C, H, W) the winning point's values; ``background`` where hole. ``C = 0`` when
            no values were given. Same dtype as the values (float32 when none).
        depth: (B, 1, H, W) float32 camera z of the winning point; 0 where hole.
        hole_mask: (B, 1, H, W) bool, True where no point landed.
        point_ids: (B, H, W) int64 index into ``points`` of the winning point; -1 where hole.
    """

    image: torch.Tensor
    depth: torch.Tensor
    hole_mask: torch.Tensor
    point_ids: torch.Tensor


# ---------------------------------------------------------------------------------- validation
def _check_finite(name: str, tensor: torch.Tensor) -> None:
    """``check_finite`` in one reduction pass: min and max are NaN if any element is, else +-inf if any is."""
    if tensor.numel() == 0:
        return
    lo, hi = torch.aminmax(tensor)
    if not bool(torch.isfinite(lo) & torch.isfinite(hi)):
        raise ValueError(f"{name} contains NaN or inf values")


def _validate(
    points: torch.Tensor,
    values: torch.Tensor | None,
    cameras: CameraParameters,
    radius: int,
    near: float,
    far: float | None,
    background: float,
) -> tuple[torch.Tensor, torch.Tensor | None, CameraParameters]:
    """Check every argument; return float32 points, values and cameras on the points' device."""
    if not isinstance(points, torch.Tensor):
        raise ValueError(f"points must be a torch.Tensor of shape (N, 3), got {type(points).__name__}")
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {tuple(points.shape)}")
    if not points.is_floating_point():
        raise ValueError(f"points must be a floating tensor, got {points.dtype}")
    if points.shape[0] > _MAX_POINTS:
        raise ValueError(f"points holds {points.shape[0]} points; at most {_MAX_POINTS} are supported")
    _check_finite("points", points)
    if values is not None:
        if not isinstance(values, torch.Tensor):
            raise ValueError(f"values must be a torch.Tensor of shape (N, C) or None, got {type(values).__name__}")
        if values.ndim != 2 or values.shape[0] != points.shape[0]:
            raise ValueError(
                f"values must have shape (N, C) with N = {points.shape[0]} (the points), got {tuple(values.shape)}"
            )
        if not values.is_floating_point():
            raise ValueError(f"values must be a floating tensor, got {values.dtype}")
        if values.device != points.device:
            raise ValueError(f"values are on {values.device} but points are on {points.device}")
        _check_finite("values", values)
    if not isinstance(cameras, CameraParameters):
        raise ValueError(f"cameras must be a CameraParameters, got {type(cameras).__name__}")
    if isinstance(radius, bool) or not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be an integer >= 0, got {radius!r}")
    if isinstance(near, bool) or not isinstance(near, (int, float)) or not math.isfinite(near) or near <= 0:
        raise ValueError(f"near must be a finite number > 0, got {near!r}")
    if far is not None and (
        isinstance(far, bool) or not isinstance(far, (int, float)) or not math.isfinite(far) or far <= near
    ):
        raise ValueError(f"far must be None or a finite number > near ({near}), got {far!r}")
    if isinstance(background, bool) or not isinstance(background, (int, float)) or not math.isfinite(background):
        raise ValueError(f"background must be a finite number, got {background!r}")
    return points.to(torch.float32), values, cameras.to(points.device)


def _empty_output(
    values: torch.Tensor | None, B: int, H: int, W: int, background: float, device: torch.device
) -> RenderOutput:
    C = 0 if values is None else values.shape[1]
    dtype = torch.float32 if values is None else values.dtype
    return RenderOutput(
        image=torch.full((B, C, H, W), float(background), dtype=dtype, device=device),
        depth=torch.zeros(B, 1, H, W, dtype=torch.float32, device=device),
        hole_mask=torch.ones(B, 1, H, W, dtype=torch.bool, device=device),
        point_ids=torch.full((B, H, W), -1, dtype=torch.int64, device=device),
    )


def _gather_image(values: torch.Tensor | None, ids: torch.Tensor, hole: torch.Tensor, background: float) -> torch.Tensor:
    """(B, H, W) winner ids (-1 = hole) -> (B, C, H, W) values, ``background`` in holes."""
    B, H, W = ids.shape
    if values is None:
        return torch.empty(B, 0, H, W, dtype=torch.float32, device=ids.device)
    # embedding() is index_select along dim 0, several times faster on CPU for narrow rows.
    picked = torch.nn.functional.embedding(ids.reshape(-1).clamp_min(0), values)  # (B*H*W, C)
    C = values.shape[1]
    fill = torch.tensor(background, dtype=values.dtype, device=values.device)
    if values.requires_grad and torch.is_grad_enabled():  # out= does not support autograd
        return torch.where(hole.view(B, 1, H * W), fill, picked.view(B, H * W, C).transpose(1, 2)).view(B, C, H, W)
    image = torch.empty(B, C, H, W, dtype=values.dtype, device=values.device)
    # One pass both transposes to (B, C, H, W) and writes the background into holes.
    torch.where(hole.view(B, 1, H * W), fill, picked.view(B, H * W, C).transpose(1, 2), out=image.view(B, C, H * W))
    return image


# ---------------------------------------------------------------------------------- fast path
def _columns(points: torch.Tensor) -> torch.Tensor:
    """(n, 3) -> (3, n) contiguous x, y, z rows (strided reads are slow in every later op)."""
    if points.device.type == "cpu":
        # numpy's transposing copy is several times faster than torch's for this shape.
        return torch.from_numpy(np.ascontiguousarray(points.detach().numpy().T))
    return points.T.contiguous()


def _affine_rows(points: torch.Tensor, A: torch.Tensor) -> list[torch.Tensor]:
    """Rows ``A[:, r] . [x, y, z, 1]`` for every camera, one float32 operation at a time.

    Element-wise ops (no BLAS) make each point's result independent of its position in the
    input or the chunking, which keeps depth ties between identical points exact.

    Args:
        points: (n, 3) float32.
        A: (B, R, 4) float32 coefficients.
    Returns:
        R tensors of shape (B, n).
    """
    x, y, z = _columns(points)
    rows = []
    for r in range(A.shape[1]):
        a = A[:, r, :, None]  # (B, 4, 1)
        h = x * a[:, 0]
        h += y * a[:, 1]
        h += z * a[:, 2]
        h += a[:, 3]
        rows.append(h)
    return rows


def _projection_matrices(cameras: CameraParameters) -> torch.Tensor:
    """(B, 3, 4) float32 ``K [R | t]``, composed in float64 (its last row is exactly ``[R | t]``'s)."""
    return (cameras.intrinsics.double() @ cameras.extrinsics[:, :3, :].double()).to(torch.float32)


def _depth_id_keys(z: torch.Tensor, first_id: int) -> torch.Tensor:
    """(B, n) positive float32 depths -> (B, n) int64 keys ``bits(z) << 32 | point index``.

    Point indices run from ``first_id``. For positive IEEE floats the bit pattern read as an
    integer is monotonic in the value, so ``min(key)`` is the nearest point and, among equal
    depths, the lowest index.
    """
    B, n = z.shape
    ids = torch.arange(first_id, first_id + n, dtype=torch.int32, device=z.device)
    if sys.byteorder == "little":
        # Write the two 32-bit halves directly: high word = depth bits, low word = index.
        key = torch.empty(B, n, 2, dtype=torch.int32, device=z.device)
        key[..., 1] = z.view(torch.int32)
        key[..., 0] = ids
        return key.view(torch.int64).view(B, n)
    return (z.view(torch.int32).to(torch.int64) << 32) | ids.to(torch.int64)


def _scatter_chunk(
    buffer: torch.Tensor,
    points: torch.Tensor,
    first_id: int,
    P: torch.Tensor,
    radius: int,
    near: float,
    far: float | None,
) -> None:
    """Z-buffer the fragments of points ``first_id .. first_id + n`` into ``buffer`` (in place).

    Args:
        buffer: (B, H + 2, W + 2) int64 keys: the image with a one-pixel border. Fragments outside
            the image are clamped into the border (discarded later), which replaces per-fragment
            bounds tests and any compaction.
        points: (n, 3) float32 world points.
        P: (B, 3, 4) projection matrices.
    """
    B, Hp, Wp = buffer.shape
    H, W = Hp - 2, Wp - 2
    hu, hv, z = _affine_rows(points, P)
    u = torch.div(hu, z).floor_()
    v = torch.div(hv, z).floor_()
    z_ok = z >= near
    if far is not None:
        z_ok &= z <= far
    # Out-of-range depths are sent far left of the image, so the clamps below put them in the
    # border column (this also replaces the NaN that z ~ 0 can give: clamp keeps NaN).
    u = torch.where(z_ok, u, -(2.0**30))
    v = torch.where(z_ok, v, 0.0)
    keys = _depth_id_keys(z, first_id).view(-1)
    # Flat index of pixel (row v, col u) in the padded buffer: b * Hp * Wp + (v + 1) * Wp + (u + 1).
    # Built in float32 where that is exact, else in int64.
    exact_float = buffer.numel() < _FLOAT_INDEX_LIMIT
    base = torch.arange(B, device=u.device, dtype=torch.int64).view(B, 1) * (Hp * Wp) + (Wp + 1)
    if exact_float:
        base = base.to(u.dtype)
    flat_buffer = buffer.view(-1)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            col = torch.clamp(u + dx if dx else u, -1, W)
            row = torch.clamp(v + dy if dy else v, -1, H)
            if not exact_float:
                col, row = col.long(), row.long()
            pix = torch.add(col, row, alpha=Wp).add_(base)
            flat_buffer.scatter_reduce_(0, pix.view(-1).long(), keys, "amin")


def splat_points(
    points: torch.Tensor,
    values: torch.Tensor | None,
    cameras: CameraParameters,
    radius: int = 0,
    near: float = 1e-3,
    far: float | None = None,
    background: float = 0.0,
) -> RenderOutput:
    """Render world points into every camera with a z-buffer (nearest point wins).

    One ``scatter_reduce_(amin)`` per footprint offset into a ``(B, H + 2, W + 2)`` buffer of
    int64 keys ``(float32 depth bits << 32) | point index``: the minimum key is the nearest point,
    with ties going to the lower index; ids, depth and values are decoded from the winning key.
    Fragments off the image are clamped into the one-pixel border and dropped with it. Points
    are processed in blocks (bounded temporaries); there is no Python loop over points.

    Args:
        points: (N, 3) world points (cast to float32).
        values: (N, C) per-point values (colours or features), or None to render only depth/ids.
        cameras: B cameras of one size ``W x H``; moved to the points' device.
        radius: footprint half-size in pixels; a point covers ``(2 radius + 1)^2`` pixels.
        near: points with camera z < near are dropped (> 0).
        far: points with camera z > far are dropped; None keeps all.
        background: value written into ``image`` at holes.
    Returns:
        :class:`RenderOutput` (image (B, C, H, W), depth (B, 1, H, W), hole_mask (B, 1, H, W),
        point_ids (B, H, W)).
    """
    points, values, cameras = _validate(points, values, cameras, radius, near, far, background)
    B, H, W, N = len(cameras), cameras.height, cameras.width, points.shape[0]
    device = points.device
    if N == 0:
        return _empty_output(values, B, H, W, background, device)

    buffer = torch.full((B, H + 2, W + 2), _INT64_MAX, dtype=torch.int64, device=device)
    P = _projection_matrices(cameras)
    chunk = max(1, (_CPU_CHUNK if device.type == "cpu" else _GPU_CHUNK) // B)
    for start in range(0, N, chunk):
        _scatter_chunk(buffer, points[start : start + chunk], start, P, radius, near, far)

    buffer = buffer[:, 1:-1, 1:-1].reshape(-1)
    hole = buffer == _INT64_MAX
    ids = torch.where(hole, -1, buffer & 0xFFFFFFFF).view(B, H, W)
    depth_bits = (buffer >> 32).to(torch.int32)
    depth = torch.where(hole, 0.0, depth_bits.view(torch.float32)).view(B, 1, H, W)
    hole = hole.view(B, 1, H, W)
    return RenderOutput(
        image=_gather_image(values, ids, hole, background),
        depth=depth,
        hole_mask=hole,
        point_ids=ids,
    )


# ---------------------------------------------------------------------------------- reference
def splat_points_reference(
    points: torch.Tensor,
    values: torch.Tensor | None,
    cameras: CameraParameters,
    radius: int = 0,
    near: float = 1e-3,
    far: float | None = None,
    background: float = 0.0,
) -> RenderOutput:
    """Slow, obvious implementation of :func:`splat_points` (same arguments, same contract).

    Projects with ``cameras.project`` (depth by the shared per-point formula), lists every (camera, pixel, depth, id) fragment of every
    footprint, sorts them so that within each pixel the nearest fragment (then the lowest id)
    comes first, and writes the first fragment of each pixel.
    """
    points, values, cameras = _validate(points, values, cameras, radius, near, far, background)
    B, H, W, N = len(cameras), cameras.height, cameras.width, points.shape[0]
    device = points.device
    if N == 0:
        return _empty_output(values, B, H, W, background, device)
    uv = cameras.project(points)[0]  # (B, N, 2)
    # Depth by the shared element-wise formula (see module docstring): exact ties stay exact.
    (z,) = _affine_rows(points, cameras.extrinsics[:, 2:3, :].to(torch.float32))
    col = torch.floor(uv[..., 0]).to(torch.float64)
    row = torch.floor(uv[..., 1]).to(torch.float64)
    keep = z >= near
    if far is not None:
        keep &= z <= far
    cam_index = torch.arange(B, device=device).view(B, 1).expand(B, N)
    point_index = torch.arange(N, device=device).view(1, N).expand(B, N)

    frag_pixel, frag_depth, frag_id = [], [], []
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            r, c = row + dy, col + dx
            ok = keep & (r >= 0) & (r < H) & (c >= 0) & (c < W)
            flat = cam_index[ok] * (H * W) + r[ok].long() * W + c[ok].long()
            frag_pixel.append(flat)
            frag_depth.append(z[ok])
            frag_id.append(point_index[ok])
    pixel = torch.cat(frag_pixel)
    depth = torch.cat(frag_depth)
    pid = torch.cat(frag_id)

    # Lexicographic order (pixel, depth, id) by stable sorts from the least significant key.
    order = torch.argsort(pid, stable=True)
    order = order[torch.argsort(depth[order], stable=True)]
    order = order[torch.argsort(pixel[order], stable=True)]
    pixel, depth, pid = pixel[order], depth[order], pid[order]
    first = torch.ones_like(pixel, dtype=torch.bool)
    first[1:] = pixel[1:] != pixel[:-1]

    ids = torch.full((B * H * W,), -1, dtype=torch.int64, device=device)
    out_depth = torch.zeros(B * H * W, dtype=torch.float32, device=device)
    ids[pixel[first]] = pid[first]
    out_depth[pixel[first]] = depth[first]
    ids = ids.view(B, H, W)
    hole = (ids < 0).view(B, 1, H, W)
    return RenderOutput(
        image=_gather_image(values, ids, hole, background),
        depth=out_depth.view(B, 1, H, W),
        hole_mask=hole,
        point_ids=ids,
    )
