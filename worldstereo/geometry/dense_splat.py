"""Gap-free point rendering: a z-buffer splat closed by coarser renders of the same points.

A point cloud lifted from one view holds one point per pixel of that view. Seen from closer, or
at a slant, its points spread apart and a one-pixel splat leaves a grid of holes between them
(and lets farther points show through those holes). Those are not unknown surface, only
sparse samples of known surface. :func:`splat_dense` renders the points at full resolution and
at ``levels`` coarser resolutions (each half the size of the one before). In a coarse render the
same points are dense again. Then it fills from coarse to fine:

* a hole at a finer level takes the coarser level's surface (depth and point id by nearest
  sampling, colour by bilinear sampling of the coarser colours, normalised over known taps), so
  holes narrower than about ``2^levels`` pixels close while larger regions (real disocclusions)
  stay holes;
* a finer-level point lying clearly behind the coarser surface (a far point seen through a gap in a
  magnified near surface; "clearly" = by more than ``depth_tolerance`` plus the coarser surface's
  own depth step to its neighbours, so a slanted floor is not behind itself) is hidden the same
  way where that coarser surface is *interior* there (the coarse pixel's four neighbours lie on its
  surface too) and the point lies over ``SEE_THROUGH_RATIO`` times deeper. Along a silhouette the
  coarse surface is not interior, so the background beside it is kept; a point
  whose 3x3 neighbourhood holds fewer than ``MIN_SAME_SURFACE`` pixels of its own surface counts
  as seen through a gap as well.

Cameras, points and the returned :class:`~worldstereo.geometry.splat.RenderOutput` follow
:func:`~worldstereo.geometry.splat.splat_points`; ``point_ids`` of filled pixels name the coarse
winner (a real point of the cloud).
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from worldstereo.camera import CameraParameters
from worldstereo.geometry.splat import RenderOutput, splat_points

__all__ = ["splat_dense"]

#: a point behind an interior coarse surface is hidden only this far behind it (a background seen
#: through a magnified foreground); layered surfaces closer together keep their own points
SEE_THROUGH_RATIO = 1.5
#: a pixel filled from level k lies at most REACH * 2^k pixels from a full-resolution point
REACH = 0.75
#: a finer-level point with fewer neighbours (of 9, itself included) on its own surface counts as isolated
MIN_SAME_SURFACE = 4


def _nearest_index(fine: int, coarse: int, device: torch.device) -> torch.Tensor:
    """For each of ``fine`` pixel centres, the coarse pixel holding it (the sizes span the same image)."""
    return ((torch.arange(fine, device=device, dtype=torch.float64) + 0.5) * coarse / fine).floor().long().clamp_(0, coarse - 1)


def _same_surface_count(depth: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, 1, H, W) number of 3x3 neighbours (self included) within ``tolerance`` of it."""
    B, _, H, W = depth.shape
    padded = F.pad(depth, (1, 1, 1, 1))
    patches = F.unfold(padded, 3).view(B, 9, H, W)
    close = (patches > 0) & ((patches - depth).abs() <= tolerance * depth)
    return close.sum(1, keepdim=True)


def _interior(depth: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, H, W) bool: all four neighbours on the same surface (not on a silhouette)."""
    padded = F.pad(depth, (1, 1, 1, 1))
    c = depth

    def same(n: torch.Tensor) -> torch.Tensor:
        return (n > 0) & (c > 0) & ((n - c).abs() <= tolerance * c)

    left, right = padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]
    up, down = padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]
    return (same(left) & same(right) & same(up) & same(down))[:, 0]


def _slope(depth: torch.Tensor) -> torch.Tensor:
    """(B, 1, H, W) depth -> (B, H, W) largest relative depth step to a 4-neighbour on the same surface.

    A slanted surface (a floor seen at a grazing angle) changes depth from pixel to pixel; a point
    of it is not "behind" its coarser render by that change. Steps over 50% are surface edges, not slope.
    """
    padded = F.pad(depth, (1, 1, 1, 1))
    c = depth
    steps = []
    for n in (padded[..., 1:-1, :-2], padded[..., 1:-1, 2:], padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]):
        rel = (n - c).abs() / c.clamp_min(1e-12)
        steps.append(torch.where((n > 0) & (c > 0) & (rel <= 0.5), rel, torch.zeros_like(rel)))
    return torch.stack(steps).amax(0)[:, 0]


def _within_reach(ids: torch.Tensor, source: torch.Tensor, own_ids: torch.Tensor) -> torch.Tensor:
    """(B, H, W) bool: pixels close enough to a full-resolution point to be filled.

    A pixel whose value came from level ``k`` sits in a region where points lie about ``2^k`` pixels
    apart; it is filled only within ``REACH * 2^k`` of the nearest pixel holding its own point (a
    Euclidean distance transform per pixel), so filled regions end in round outlines around the
    last points rather than along the coarse renders' pixel grid.
    """
    own = (own_ids >= 0).cpu().numpy()
    reach = REACH * torch.pow(2.0, source.float()).cpu().numpy()
    out = np.zeros(own.shape, dtype=bool)
    for b in range(own.shape[0]):
        if not own[b].any():
            continue
        dist = cv2.distanceTransform((~own[b]).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        out[b] = dist <= reach[b]
    return torch.from_numpy(out).to(ids.device).unsqueeze(1) & (ids >= 0).unsqueeze(1)


def splat_dense(
    points: torch.Tensor,
    values: torch.Tensor | None,
    cameras: CameraParameters,
    levels: int = 3,
    near: float = 1e-3,
    depth_tolerance: float = 0.05,
    background: float = 0.0,
) -> RenderOutput:
    """Render ``points`` into ``cameras`` with the gaps between sparse samples closed (module docstring).

    Args:
        points: (N, 3) world points.
        values: (N, C) per-point values (colours), or None.
        cameras: B cameras of one size ``W x H``.
        levels: coarser renders used (0 = a plain one-pixel splat); holes up to ~``2^levels`` pixels close.
        near: points nearer than this are dropped.
        depth_tolerance: relative depth difference that separates two surfaces.
        background: value of ``image`` in the remaining holes.
    Returns:
        RenderOutput: image (B, C, H, W), depth (B, 1, H, W), hole_mask (B, 1, H, W), point_ids (B, H, W).
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 0:
        raise ValueError(f"levels must be an integer >= 0, got {levels!r}")
    full = splat_points(points, values, cameras, near=near, background=background)
    if levels == 0 or points.shape[0] == 0:
        return full
    W, H = cameras.width, cameras.height
    renders = [full]
    for k in range(1, levels + 1):
        w, h = max(1, math.ceil(W / 2**k)), max(1, math.ceil(H / 2**k))
        if (w, h) == (renders[-1].depth.shape[-1], renders[-1].depth.shape[-2]):
            break
        renders.append(splat_points(points, values, cameras.resized(w, h), near=near, background=background))

    coarse = renders[-1]
    depth, ids = coarse.depth, coarse.point_ids
    image = coarse.image
    valid = ~coarse.hole_mask
    source = torch.full_like(ids, len(renders) - 1)  # the level each pixel's value comes from
    for level_index, level in reversed(list(enumerate(renders[:-1]))):
        h, w = level.depth.shape[-2:]
        dev = depth.device
        rows = _nearest_index(h, depth.shape[-2], dev)
        cols = _nearest_index(w, depth.shape[-1], dev)
        up_depth = depth[:, :, rows][:, :, :, cols]
        up_ids = ids[:, rows][:, :, cols]
        weight = F.interpolate(valid.to(depth.dtype), size=(h, w), mode="bilinear", align_corners=False)
        # coarse coverage by its bilinear weight: outlines cut the coarse pixels' corners instead of
        # following their grid (nearest sampling would draw the coarse squares into the frame)
        up_valid = (up_ids >= 0) & (weight[:, 0] >= 0.5)
        up_slope = _slope(depth)[:, rows][:, :, cols]
        # coarse depth between coarse pixels of one surface: bilinear (a staircase of block depths
        # would make later reprojections of the frame blocky), nearest across surface edges
        lin_depth = F.interpolate(depth * valid, size=(h, w), mode="bilinear", align_corners=False) / weight.clamp_min(1e-6)
        smooth = (lin_depth - up_depth).abs() <= (depth_tolerance + up_slope.unsqueeze(1)) * up_depth
        up_depth = torch.where(smooth, lin_depth, up_depth)
        # which finer points are seen through a gap: decided per fine pixel from interpolated coarse
        # values, so the hidden areas do not end along the coarse grid either
        interior = _interior(depth, depth_tolerance).unsqueeze(1).to(depth.dtype)
        up_interior = F.interpolate(interior, size=(h, w), mode="bilinear", align_corners=False)[:, 0] >= 0.5
        own_hole = level.point_ids < 0
        behind = ~own_hole & up_valid & (level.depth[:, 0] > up_depth[:, 0] * (1.0 + depth_tolerance + up_slope))
        isolated = _same_surface_count(level.depth, depth_tolerance)[:, 0] < MIN_SAME_SURFACE
        far_behind = behind & (level.depth[:, 0] > SEE_THROUGH_RATIO * up_depth[:, 0])
        take = up_valid & (own_hole | (behind & isolated) | (far_behind & up_interior))  # (B, H, W)
        source = torch.where(take, source[:, rows][:, :, cols], torch.full_like(take, level_index, dtype=source.dtype))
        depth = torch.where(take.unsqueeze(1), up_depth, level.depth)
        ids = torch.where(take, up_ids, level.point_ids)
        if image.shape[1] > 0:
            up_image = F.interpolate(image * valid, size=(h, w), mode="bilinear", align_corners=False)
            up_image = up_image / weight.clamp_min(1e-6)
            image = torch.where(take.unsqueeze(1), up_image, level.image)
        else:
            image = level.image
        valid = (ids >= 0).unsqueeze(1)
    hole = ~valid | ~_within_reach(ids, source, renders[0].point_ids)
    ids = torch.where(hole[:, 0], torch.full_like(ids, -1), ids)
    if image.shape[1] > 0:
        image = torch.where(hole, torch.full_like(image, float(background)), image)
    return RenderOutput(image=image, depth=torch.where(hole, torch.zeros_like(depth), depth), hole_mask=hole, point_ids=ids)
