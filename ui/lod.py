"""Level of detail for the viewport: a bounded, deterministic subset of a large point cloud.

The memory keeps every point; the viewport is sent at most ``max_points`` of them as float32 positions and
uint8 colours (``viser`` wants float32 points).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass(frozen=True)
class ViewCloud:
    """What the viewport draws.

    Attributes:
        points: (M, 3) float32 world positions, M <= max_points.
        colors: (M, 3) uint8 RGB.
        total: number of points in the memory (M == total when nothing was dropped).
    """

    points: np.ndarray
    colors: np.ndarray
    total: int

    @property
    def subsampled(self) -> bool:
        return len(self.points) < self.total


def _numpy(x: torch.Tensor | np.ndarray) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def colors_uint8(colors: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, 3) float colours in [0, 1] (or uint8) -> (N, 3) uint8."""
    c = _numpy(colors)
    if c.dtype == np.uint8:
        return c
    return np.clip(np.rint(c.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)


def view_subset(points: torch.Tensor | np.ndarray, colors: torch.Tensor | np.ndarray, max_points: int, seed: int = 0) -> ViewCloud:
    """At most ``max_points`` of ``points`` (N, 3) and ``colors`` (N, 3): all of them, or a uniform random subset.

    The subset is a fixed function of ``(N, max_points, seed)`` (same points on every call for the same cloud).
    """
    if max_points <= 0:
        raise ValueError(f"max_points must be positive, got {max_points}")
    p = _numpy(points)
    c = _numpy(colors)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {p.shape}")
    if c.shape != p.shape:
        raise ValueError(f"colors must have shape {p.shape}, got {c.shape}")
    n = p.shape[0]
    if n > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
        p, c = p[idx], c[idx]
    return ViewCloud(np.ascontiguousarray(p, dtype=np.float32), colors_uint8(c), n)
