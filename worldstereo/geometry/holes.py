"""Hole handling for rendered frames: thin-gap filling, depth extension, colour inpainting.

All functions work on single frames: colour ``(3, H, W)`` float in [0, 1], depth ``(1, H, W)``
(0 = unknown) and hole masks ``(1, H, W)`` bool (True = hole), on the CPU.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from scipy import ndimage


def thin_gap_mask(hole: torch.Tensor, max_gap: int = 2) -> torch.Tensor:
    """Holes that a morphological closing of the covered area removes: gaps at most ~``2 * max_gap`` wide.

    Args:
        hole: (1, H, W) bool, True = hole.
    Returns:
        (1, H, W) bool, True where the hole is a thin gap surrounded by coverage.
    """
    covered = (~hole[0]).numpy().astype(np.uint8)
    k = 2 * max_gap + 1
    closed = cv2.morphologyEx(covered, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8))
    return torch.from_numpy((closed > 0) & (covered == 0)).unsqueeze(0)


def fill_thin_gaps(
    image: torch.Tensor, depth: torch.Tensor, hole: torch.Tensor, max_gap: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fill thin gaps by normalised convolution of the covered neighbours.

    Args:
        image: (3, H, W); depth: (1, H, W); hole: (1, H, W) bool.
    Returns:
        (image, depth, hole) with thin gaps filled and removed from the hole mask.
    """
    gaps = thin_gap_mask(hole, max_gap)
    if not bool(gaps.any()):
        return image, depth, hole
    k = 2 * max_gap + 1
    valid = (~hole[0]).numpy().astype(np.float32)
    weight = cv2.blur(valid, (k, k))
    weight = np.maximum(weight, 1e-6)
    img_np = image.permute(1, 2, 0).numpy()
    img_avg = cv2.blur(img_np * valid[..., None], (k, k)) / weight[..., None]
    # depth: the mean of the front-most surface among the neighbours (those within 3% of the
    # nearest), so gaps on a surface get its depth and gaps on a silhouette the foreground's
    d = depth[0].numpy().copy()
    d_for_min = np.where(valid > 0, d, np.inf).astype(np.float32)
    d_min = cv2.erode(d_for_min, np.ones((k, k), np.uint8))
    g = gaps[0].numpy()
    gy, gx = np.nonzero(g)
    acc = np.zeros(gy.shape[0], np.float64)
    cnt = np.zeros(gy.shape[0], np.float64)
    h, w = d.shape
    for dy in range(-max_gap, max_gap + 1):
        for dx in range(-max_gap, max_gap + 1):
            yy, xx = np.clip(gy + dy, 0, h - 1), np.clip(gx + dx, 0, w - 1)
            nd = d_for_min[yy, xx]
            front = np.isfinite(nd) & (nd <= 1.03 * d_min[gy, gx])
            acc += np.where(front, nd, 0.0)
            cnt += front
    img_out = img_np.copy()
    img_out[g] = img_avg[g]
    d[gy, gx] = np.where(cnt > 0, acc / np.maximum(cnt, 1), np.inf)
    ok = np.isfinite(d)
    d[~ok] = 0.0
    new_hole = hole[0].numpy() & ~(g & ok)
    return (
        torch.from_numpy(img_out).permute(2, 0, 1).contiguous(),
        torch.from_numpy(d).unsqueeze(0),
        torch.from_numpy(new_hole).unsqueeze(0),
    )


def extend_depth_background(
    depth: torch.Tensor,
    hole: torch.Tensor,
    tolerance: float = 0.9,
    slope: bool = True,
    fit_window: int = 15,
    max_change: float = 3.0,
) -> torch.Tensor:
    """Fill depth holes by continuing the surface on their background side.

    A disocclusion shows what was behind the foreground, so each hole pixel continues the nearest
    pixel of the hole's border that is on its far side: along every row and column, a run of hole
    pixels bounded by known pixels at both ends marks its nearer end as foreground when that is
    nearer than ``tolerance`` times the farther end (so a hole between an occluder and the floor
    behind it takes the floor). With ``slope`` it continues along that surface's local plane (a plane's
    inverse depth is affine in the pixel coordinates; fitted over the ``fit_window`` pixels around
    the seed that lie on the seed's surface), so a floor running out of the frame keeps coming
    nearer and a slanted wall keeps receding instead of turning into a fronto-parallel sheet that
    later views see in the wrong place; the continued depth stays within ``max_change`` times the
    seed's either way. Without ``slope``, the seed's depth is copied.

    Args:
        depth: (1, H, W) with valid values where ``~hole``; hole: (1, H, W) bool.
    Returns:
        (1, H, W) depth, positive everywhere if any pixel is covered.
    """
    h = hole[0].numpy()
    d = depth[0].numpy().astype(np.float32)
    if not h.any() or h.all():
        return depth.clone()
    valid = ~h & (d > 0)
    border = valid & cv2.dilate(h.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    near = _near_run_ends(d, h, valid, tolerance) | _near_run_ends(d.T, h.T, valid.T, tolerance).T
    # the occluder's corner pixels end no run: border pixels beside a near end and as near count too
    near_depth = cv2.dilate(np.where(near, d, 0.0).astype(np.float32), np.ones((5, 5), np.uint8))
    near |= border & (near_depth > 0) & (d <= near_depth / tolerance)
    seeds = border & ~near
    if not seeds.any():
        seeds = valid if valid.any() else ~h
    _, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    out = d.copy()
    sy, sx = iy[h], ix[h]
    seed_depth = d[sy, sx]
    if not slope:
        out[h] = seed_depth
        return torch.from_numpy(out).unsqueeze(0)
    flat = sy * d.shape[1] + sx
    used, inverse = np.unique(flat, return_inverse=True)
    gx, gy = _seed_slopes(d, valid, used // d.shape[1], used % d.shape[1], fit_window)
    hy, hx = np.nonzero(h)
    q_seed = 1.0 / seed_depth
    q = q_seed + gx[inverse] * (hx - sx) + gy[inverse] * (hy - sy)
    q = np.clip(q, q_seed / max_change, q_seed * max_change)
    out[h] = 1.0 / q
    return torch.from_numpy(out).unsqueeze(0)


def _near_run_ends(depth: np.ndarray, hole: np.ndarray, valid: np.ndarray, tolerance: float) -> np.ndarray:
    """(H, W) bool: known pixels ending a horizontal run of holes whose other end is much farther.

    Args:
        depth: (H, W); hole, valid: (H, W) bool. Transpose all three for vertical runs.
    """
    hh, ww = hole.shape
    padded = np.zeros((hh, ww + 2), np.int8)
    padded[:, 1:-1] = hole
    step = np.diff(padded, axis=1)
    rs, starts = np.nonzero(step == 1)  # a run starts at column `starts` ...
    _, ends = np.nonzero(step == -1)  # ... and its first pixel after it is `ends` (row-major order pairs them)
    left, right = starts - 1, ends
    both = (left >= 0) & (right < ww)
    rs, left, right = rs[both], left[both], right[both]
    ok = valid[rs, left] & valid[rs, right]
    rs, left, right = rs[ok], left[ok], right[ok]
    dl, dr = depth[rs, left], depth[rs, right]
    near = np.zeros_like(hole)
    near[rs[dl < tolerance * dr], left[dl < tolerance * dr]] = True
    near[rs[dr < tolerance * dl], right[dr < tolerance * dl]] = True
    return near


def _seed_slopes(
    depth: np.ndarray, valid: np.ndarray, ys: np.ndarray, xs: np.ndarray, window: int, same_surface: float = 0.15
) -> tuple[np.ndarray, np.ndarray]:
    """Slopes (d/dx, d/dy) of inverse depth at seed pixels, from the plane of their own surface.

    Least squares of ``1/z = a x + b y + c`` over the valid pixels of the ``window`` x ``window``
    box around each seed whose inverse depth is within ``same_surface`` (relative) of the seed's,
    so an occluder beside it does not tilt the plane; (0, 0) where the fit is ill-posed (too few
    or collinear pixels).

    Args:
        depth: (H, W) float; valid: (H, W) bool; ys, xs: (S,) seed coordinates.
    Returns:
        (gx, gy): (S,) each, inverse depth per pixel.
    """
    hh, ww = depth.shape
    r = window // 2
    oy, ox = np.mgrid[-r : r + 1, -r : r + 1]
    oy, ox = oy.ravel().astype(np.float64), ox.ravel().astype(np.float64)
    py = ys[:, None] + oy.astype(np.int64)[None]
    px = xs[:, None] + ox.astype(np.int64)[None]
    inside = (py >= 0) & (py < hh) & (px >= 0) & (px < ww)
    py, px = np.clip(py, 0, hh - 1), np.clip(px, 0, ww - 1)
    q = 1.0 / np.maximum(depth[py, px].astype(np.float64), 1e-12)
    q0 = 1.0 / np.maximum(depth[ys, xs].astype(np.float64), 1e-12)[:, None]
    w = (inside & valid[py, px] & (np.abs(q - q0) <= same_surface * q0)).astype(np.float64)
    n = w.sum(1)
    safe_n = np.maximum(n, 1.0)
    mx, my, mq = (w * ox).sum(1) / safe_n, (w * oy).sum(1) / safe_n, (w * q).sum(1) / safe_n
    dx, dy, dq = ox[None] - mx[:, None], oy[None] - my[:, None], q - mq[:, None]
    cxx, cxy, cyy = (w * dx * dx).sum(1), (w * dx * dy).sum(1), (w * dy * dy).sum(1)
    cxq, cyq = (w * dx * dq).sum(1), (w * dy * dq).sum(1)
    det = cxx * cyy - cxy * cxy
    ok = (n >= window) & (det > 1e-3 * np.maximum(cxx * cyy, 1e-12))
    safe_det = np.where(ok, det, 1.0)
    gx = np.where(ok, (cyy * cxq - cxy * cyq) / safe_det, 0.0)
    gy = np.where(ok, (cxx * cyq - cxy * cxq) / safe_det, 0.0)
    return gx, gy


def inpaint_colors(image: torch.Tensor, hole: torch.Tensor, radius: int = 3) -> torch.Tensor:
    """Inpaint hole pixels with OpenCV's Telea method.

    Args:
        image: (3, H, W) float in [0, 1]; hole: (1, H, W) bool.
    Returns:
        (3, H, W) float in [0, 1].
    """
    mask = hole[0].numpy().astype(np.uint8)
    if not mask.any():
        return image.clone()
    if mask.all():
        raise ValueError("nothing to inpaint from: every pixel is a hole")
    img8 = (image.permute(1, 2, 0).clamp(0, 1).numpy() * 255.0 + 0.5).astype(np.uint8)
    out8 = cv2.inpaint(img8, mask, radius, cv2.INPAINT_TELEA)
    out = torch.from_numpy(out8.astype(np.float32) / 255.0).permute(2, 0, 1)
    keep = ~hole
    return torch.where(keep, image, out)
