"""The GGM's merge, re-observation and eviction in torch, for memories whose buffers live on a device.

:class:`~worldstereo.memory.global_geometric.GlobalGeometricMemory` keeps its CPU path (compiled
kernels editing NumPy views of its buffers in place); a memory moved to a GPU runs these instead, so
its points never leave the device. Same semantics as the CPU path:

- a new point merges into the nearest stored point (as stored before the update) within the merge
  distance (a uniform grid of that side, :func:`worldstereo.memory.grid_knn.nearest_within`); several
  merges into one point give the running mean of all of them (position, colour when given, stored
  embedding), count + number merged, confidence the largest, last-seen step and observer this update;
- the other new points are appended;
- eviction drops the points seen longest ago, evenly spaced among the ties, in stable order.

Each function takes the memory itself (its buffers, ``_n``, ``_reserve``), which imports this module.
Results equal the CPU path's up to float32 rounding of the means (``(c * p + sum) / (c + n)`` in one
step rather than ``n`` running updates) and the choice among equidistant nearest points. Each call
reads a few scalars back to the host (how many points merged and were appended, which sizes the
buffers); nothing per point.
"""

from __future__ import annotations

from typing import Any

import torch

from worldstereo.memory.grid_knn import build_grid, nearest_within

__all__ = ["evict_on_device", "observe_on_device", "update_on_device"]

#: grid cell side / merge distance (exact from 1; larger cells hold more candidates per query)
CELL_MARGIN = 1.0


def update_on_device(
    mem: Any,
    points: torch.Tensor,
    center: torch.Tensor,
    step: int,
    threshold: float,
    colors: torch.Tensor | None,
    features: torch.Tensor | None,
    confidence: torch.Tensor | None,
    default_color: float,
) -> tuple[int, int]:
    """Merge (M, 3) ``points`` into ``mem`` (buffers on its device); returns (num_added, num_merged).

    ``center`` (3,) is the observer; ``features`` (M, D) are the embeddings of the new points when the
    memory stores embeddings (None otherwise); ``colors`` (M, 3) and ``confidence`` (M,) are optional.
    """
    dev = mem._pos.device
    pts = points.detach().to(dev, torch.float32)
    m = pts.shape[0]
    center = center.to(dev, torch.float32)
    rgb = colors.detach().to(dev, torch.float32) if colors is not None else None
    feats = features.detach().to(dev, torch.float32) if features is not None else None
    conf = (confidence.detach().to(dev, torch.float32).clamp(0.0, 1.0) if confidence is not None
            else torch.ones(m, device=dev))
    n0 = mem._n
    if n0 and m:
        grid = build_grid(mem.point_cloud.detach(), cell=CELL_MARGIN * threshold)
        target = nearest_within(grid, pts, threshold)
    else:
        target = torch.full((m,), -1, dtype=torch.int64, device=dev)
    merged = target >= 0
    num_merged = int(merged.sum())
    if num_merged:
        uniq, inv = torch.unique(target[merged], return_inverse=True)
        n_new = torch.bincount(inv, minlength=uniq.numel())
        c1 = mem._count[uniq] + n_new
        share = (n_new.float() / c1.float()).unsqueeze(1)  # the new observations' weight in the mean

        def mean_into(buf: torch.Tensor, values: torch.Tensor) -> None:
            total = torch.zeros(uniq.numel(), values.shape[1], device=dev).index_add_(0, inv, values[merged])
            cur = buf[uniq]
            buf[uniq] = cur + (total / n_new.unsqueeze(1).float() - cur) * share

        mean_into(mem._pos, pts)
        if rgb is not None:
            mean_into(mem._rgb, rgb)
        if feats is not None:
            mean_into(mem._embedding, feats)
        top = torch.zeros(uniq.numel(), device=dev).scatter_reduce_(0, inv, conf[merged], "amax", include_self=False)
        mem._conf[uniq] = torch.maximum(mem._conf[uniq], top)
        mem._count[uniq] = c1
        mem._last_seen[uniq] = step
        mem._observer[uniq] = center
    num_added = m - num_merged
    if num_added:
        keep = ~merged
        mem._reserve(n0 + num_added)
        rows = slice(n0, n0 + num_added)
        mem._pos[rows] = pts[keep]
        mem._rgb[rows] = rgb[keep] if rgb is not None else default_color
        mem._observer[rows] = center
        mem._count[rows] = 1
        mem._conf[rows] = conf[keep]
        mem._last_seen[rows] = step
        if feats is not None:
            mem._embedding[rows] = feats[keep]
        mem._n = n0 + num_added
    return num_added, num_merged


def observe_on_device(mem: Any, ids: torch.Tensor, center: torch.Tensor, step: int) -> int:
    """Stored points ``ids`` (K,) seen again: count + 1, last-seen ``step``, observer ``center``; returns how many distinct."""
    dev = mem._pos.device
    uniq = torch.unique(ids.to(dev))
    if uniq.numel():
        mem._count[uniq] += 1
        mem._last_seen[uniq] = step
        mem._observer[uniq] = center.to(dev, torch.float32)
    return int(uniq.numel())


def evict_on_device(mem: Any, excess: int, buffers: tuple[str, ...]) -> torch.Tensor:
    """Drop the ``excess`` points seen longest ago (ties: evenly spaced among the oldest step), compacting the
    per-point ``buffers`` (names) in order; returns the (N_before,) bool mask of the rows kept."""
    last = mem.last_seen
    cum = torch.cumsum(torch.bincount(last), 0)
    boundary = int(torch.searchsorted(cum, torch.tensor(excess, device=last.device)))  # the excess-th oldest step
    same = torch.nonzero(last == boundary).squeeze(1)
    rem = excess - int((last < boundary).sum())
    keep = last >= boundary
    pick = torch.linspace(0, same.numel() - 1, rem, device=last.device).round().long()
    keep[same[pick]] = False
    index = torch.nonzero(keep).squeeze(1)
    kept = mem._n - excess
    explicit = bool(mem._explicit_embedding)
    for name in buffers:
        if name == "_embedding" and not explicit:
            continue
        buf = getattr(mem, name)
        buf[:kept] = buf.index_select(0, index)
    mem._n = kept
    return keep
