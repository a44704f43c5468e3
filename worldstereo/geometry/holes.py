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


def extend_depth_background(depth: torch.Tensor, hole: torch.Tensor, window: int = 7, tolerance: float = 0.9) -> torch.Tensor:
    """Fill depth holes from their background side.

    A disocclusion shows what was behind the foreground, so each hole pixel takes the depth of
    the nearest covered pixel that is on the far side of its neighbourhood (its depth is at least
    ``tolerance`` times the farthest covered depth within ``window``).

    Args:
        depth: (1, H, W) with valid values where ``~hole``; hole: (1, H, W) bool.
    Returns:
        (1, H, W) depth, positive everywhere if any pixel is covered.
    """
    h = hole[0].numpy()
    d = depth[0].numpy().astype(np.float32)
    if not h.any() or h.all():
        return depth.clone()
    valid = ~h
    d_valid = np.where(valid, d, 0.0).astype(np.float32)
    local_max = cv2.dilate(d_valid, np.ones((window, window), np.uint8))
    border = valid & cv2.dilate(h.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    seeds = border & (d_valid >= tolerance * local_max)
    if not seeds.any():
        seeds = valid
    _, (iy, ix) = ndimage.distance_transform_edt(~seeds, return_indices=True)
    out = d.copy()
    out[h] = d[iy[h], ix[h]]
    return torch.from_numpy(out).unsqueeze(0)


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
