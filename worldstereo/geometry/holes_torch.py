"""Thin-gap filling in torch, on the device a frame was rendered on (a GPU with CUDA).

The same operation as :func:`worldstereo.geometry.holes.fill_thin_gaps` (OpenCV on the CPU), so that
a GPU's render stays on the GPU through the gap filling and the SSM decode:

- thin gaps: holes a morphological closing of the covered area by a ``(2 max_gap + 1)^2`` square
  removes (max pooling; the image border never closes a gap, as OpenCV's default border);
- colour: the mean of the covered neighbours in that square (a box filter with OpenCV's default
  border, reflect-101);
- depth: the mean of the front-most neighbours (within 3% of the nearest), as the CPU version.

Equal to the OpenCV version up to float rounding of the box filter's sums.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["fill_thin_gaps_torch", "thin_gap_mask_torch"]


def _dilate(x: torch.Tensor, k: int) -> torch.Tensor:
    return F.max_pool2d(x, k, stride=1, padding=k // 2)


def thin_gap_mask_torch(hole: torch.Tensor, max_gap: int = 2) -> torch.Tensor:
    """(1, H, W) bool: the thin gaps of ``hole`` (1, H, W) bool (see the module docstring)."""
    k = 2 * max_gap + 1
    covered = (~hole).float().unsqueeze(0)  # (1, 1, H, W)
    closed = -_dilate(-_dilate(covered, k), k)  # closing: dilate, then erode (padding never wins either)
    return (closed[0] > 0) & hole


def _box_mean(x: torch.Tensor, k: int) -> torch.Tensor:
    """Mean over a k x k window of (C, H, W), borders reflected without repeating the edge (OpenCV's default)."""
    r = k // 2
    padded = F.pad(x.unsqueeze(0), (r, r, r, r), mode="reflect")
    return F.avg_pool2d(padded, k, stride=1)[0]


def fill_thin_gaps_torch(
    image: torch.Tensor, depth: torch.Tensor, hole: torch.Tensor, max_gap: int = 2
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Fill thin gaps on the tensors' device: (3, H, W), (1, H, W), (1, H, W) bool -> the same, gaps filled."""
    gaps = thin_gap_mask_torch(hole, max_gap)
    if not bool(gaps.any()):
        return image, depth, hole
    k = 2 * max_gap + 1
    valid = (~hole).float()  # (1, H, W)
    weight = _box_mean(valid, k).clamp_min(1e-6)
    img_avg = _box_mean(image * valid, k) / weight
    # depth: the neighbours within 3% of the nearest covered one (replicated border, as the CPU clips)
    d_valid = torch.where(hole, torch.full_like(depth, float("inf")), depth)
    d_min = -_dilate(-d_valid.unsqueeze(0), k)[0]
    padded = F.pad(d_valid.unsqueeze(0), (max_gap,) * 4, mode="replicate")[0]  # (1, H + 2g, W + 2g)
    h, w = depth.shape[-2:]
    acc = torch.zeros_like(depth, dtype=torch.float64)
    cnt = torch.zeros_like(depth, dtype=torch.float64)
    for dy in range(k):
        for dx in range(k):
            nd = padded[:, dy : dy + h, dx : dx + w]
            front = torch.isfinite(nd) & (nd <= 1.03 * d_min)
            acc += torch.where(front, nd, torch.zeros_like(nd)).double()
            cnt += front.double()
    filled = torch.where(cnt > 0, acc / cnt.clamp_min(1), torch.full_like(acc, float("inf"))).float()
    ok = gaps & torch.isfinite(filled)
    image = torch.where(gaps, img_avg, image)
    depth = torch.where(gaps, torch.where(ok, filled, torch.zeros_like(filled)), depth)
    return image, depth, hole & ~ok
