"""Exact k-nearest neighbours on a uniform grid, in torch on any device (the GPU's ``cuda_knn``).

The points are sorted by the cell of a uniform grid (one radix sort on the device); a query gathers
the points of the ``(2r + 1)^3`` cells around its own, keeps the k nearest with one segmented sort of
(query, squared distance) keys, and is *resolved* when its k-th distance is no larger than the
distance from the query to the outside of the searched block: no point outside can be nearer.
Unresolved queries (too few points near them) search again with ``r`` doubled, and the last few
fall back to exact brute force. The answers are therefore exact, the same neighbours as a k-d tree
up to ties and float32 rounding of the distances.

The cell side is chosen per ``k`` from the points: the occupied cells should hold about ``k / 2``
points each, so that the ``3 x 3 x 3`` block around a query on a surface holds some ``5k`` candidates
and its inner ball of radius ``h`` about ``k`` (memories hold surfaces: occupancy grows about as
``h^2``; the fit measures the exponent rather than assuming it).

Work is bounded per chunk of queries by ``max_pairs`` candidate pairs; nothing here leaves the device
except the few scalars that size a chunk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

__all__ = ["Grid", "brute_force_knn", "build_grid", "grid_knn", "nearest_within"]

#: searched block radii (cells) before the remaining queries fall back to brute force
RADII = (1, 2, 4)
#: occupied-cell occupancy aimed at, as a share of k
OCCUPANCY_SHARE = 0.5
#: grid cells per axis at most (keys of 3 axes fit in an int64)
MAX_CELLS_PER_AXIS = 1 << 20


@dataclass(frozen=True)
class Grid:
    """Points sorted by grid cell.

    Attributes:
        origin: (3,) world position of cell (0, 0, 0)'s corner.
        cell: cell side in world units.
        dims: (3,) int64 cells per axis.
        points: (N, 3) float32 points in cell order.
        order: (N,) int64 index of each sorted point in the original order.
        keys: (C,) int64 linear keys of the occupied cells, ascending.
        starts, counts: (C,) int64 first sorted point and number of points of each occupied cell.
    """

    origin: torch.Tensor
    cell: float
    dims: torch.Tensor
    points: torch.Tensor
    order: torch.Tensor
    keys: torch.Tensor
    starts: torch.Tensor
    counts: torch.Tensor


def _cell_keys(points: torch.Tensor, origin: torch.Tensor, cell: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 3) integer cells and the grid's (3,) dims for ``points`` (all inside)."""
    ijk = torch.floor((points - origin) / cell).to(torch.int64)
    return ijk, ijk.amax(0) + 1


def _linear(ijk: torch.Tensor, dims: torch.Tensor) -> torch.Tensor:
    return (ijk[..., 0] * dims[1] + ijk[..., 1]) * dims[2] + ijk[..., 2]


def _occupancy(points: torch.Tensor, origin: torch.Tensor, cell: float) -> float:
    ijk, dims = _cell_keys(points, origin, cell)
    occupied = torch.unique(_linear(ijk, dims)).numel()
    return points.shape[0] / max(1, occupied)


def _cell_size(points: torch.Tensor, origin: torch.Tensor, k: int) -> float:
    """A cell side whose occupied cells hold about ``OCCUPANCY_SHARE * k`` points (see the module doc)."""
    n = points.shape[0]
    target = max(1.0, OCCUPANCY_SHARE * k)
    extent = float((points.amax(0) - points.amin(0)).max())
    if extent <= 0.0 or n <= target:
        return max(extent, 1e-6) * 1.01 + 1e-6
    # first guess: points on a surface of about extent^2
    cell = extent * math.sqrt(target / n)
    occ = _occupancy(points, origin, cell)
    exponent = 2.0
    for _ in range(3):
        if 0.5 * target <= occ <= 2.0 * target:
            break
        nxt = cell * (target / occ) ** (1.0 / exponent)
        nxt = min(max(nxt, cell / 64.0), cell * 64.0, extent * 1.01 + 1e-6)
        occ2 = _occupancy(points, origin, nxt)
        if occ2 != occ and nxt != cell:
            exponent = min(3.0, max(0.5, math.log(occ2 / occ) / math.log(nxt / cell)))
        cell, occ = nxt, occ2
    return cell


def build_grid(points: torch.Tensor, k: int | None = None, cell: float | None = None) -> Grid:
    """Sort ``points`` (N, 3) (N >= 1, finite) into a grid sized for ``k`` neighbours, or of side ``cell``."""
    pts = points.detach().to(torch.float32).contiguous()
    origin = pts.amin(0)
    if cell is None:
        if k is None:
            raise ValueError("build_grid needs k or cell")
        cell = _cell_size(pts, origin, k)
    # linear cell keys must fit in int64: at most 2^20 cells per axis (a far outlier coarsens the grid;
    # answers stay exact, queries just see more candidates)
    extent = float((pts.amax(0) - origin).max())
    cell = max(float(cell), extent / MAX_CELLS_PER_AXIS, 1e-12)
    ijk, dims = _cell_keys(pts, origin, cell)
    key = _linear(ijk, dims)
    key, order = torch.sort(key)
    keys, counts = torch.unique_consecutive(key, return_counts=True)
    starts = torch.cumsum(counts, 0) - counts
    return Grid(origin, cell, dims, pts[order], order, keys, starts, counts)


def _offsets(r: int, device: torch.device) -> torch.Tensor:
    a = torch.arange(-r, r + 1, device=device)
    return torch.stack(torch.meshgrid(a, a, a, indexing="ij"), -1).reshape(-1, 3)


def _block_cells(grid: Grid, q: torch.Tensor, r: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per query: (Q, B) first sorted point and count of each cell of its block, and (Q,) the distance
    from the query to the outside of the block."""
    rel = (q - grid.origin) / grid.cell
    qc = torch.floor(rel).to(torch.int64)
    nc = qc[:, None, :] + _offsets(r, q.device)[None]  # (Q, B, 3)
    inside = ((nc >= 0) & (nc < grid.dims)).all(-1)
    key = _linear(nc, grid.dims)
    pos = torch.searchsorted(grid.keys, key).clamp_max(grid.keys.numel() - 1)
    found = inside & (grid.keys[pos] == key)
    starts = torch.where(found, grid.starts[pos], 0)
    counts = torch.where(found, grid.counts[pos], 0)
    lo = (rel - (qc - r).to(rel.dtype)).amin(-1)
    hi = ((qc + r + 1).to(rel.dtype) - rel).amin(-1)
    return starts, counts, torch.minimum(lo, hi) * grid.cell


def _chunk_knn(grid: Grid, q: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor, k: int, width: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """k nearest (squared distance, sorted point index) among each query's block: the candidates laid out
    in a (Q, width) table (``width`` >= every query's count), then one ``topk``; inf / -1 where fewer exist."""
    dev = q.device
    ends = torch.cumsum(counts, 1)  # (Q, B) candidates up to and including each cell
    j = torch.arange(width, device=dev).expand(q.shape[0], width).contiguous()
    cell = torch.searchsorted(ends, j, right=True).clamp_max(counts.shape[1] - 1)  # the cell of candidate j
    first = (ends - counts).gather(1, cell)
    pt = starts.gather(1, cell) + (j - first)
    valid = j < ends[:, -1:]
    pt = torch.where(valid, pt, 0)
    d2 = (grid.points[pt] - q[:, None, :]).square().sum(-1).masked_fill(~valid, float("inf"))
    kk = min(k, width)
    d, pos = torch.topk(d2, kk, dim=1, largest=False, sorted=True)
    idx = torch.where(torch.isfinite(d), pt.gather(1, pos), -1)
    if kk < k:
        d = torch.cat([d, d.new_full((d.shape[0], k - kk), float("inf"))], 1)
        idx = torch.cat([idx, idx.new_full((idx.shape[0], k - kk), -1)], 1)
    return d, idx


def grid_knn(grid: Grid, queries: torch.Tensor, k: int, max_pairs: int = 1 << 25
             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest neighbours of ``queries`` (Q, 3) among the grid's points (k <= N).

    Returns:
        (Q, k) float32 distances (ascending) and (Q, k) int64 indices into the original points.
    """
    q_all = queries.detach().to(grid.points.device, torch.float32).contiguous()
    nq = q_all.shape[0]
    dist = torch.empty(nq, k, device=q_all.device)
    index = torch.empty(nq, k, dtype=torch.int64, device=q_all.device)
    todo = torch.arange(nq, device=q_all.device)
    for r in RADII:
        if todo.numel() == 0:
            break
        starts, counts, reach = _block_cells(grid, q_all[todo], r)
        per_query = counts.sum(1)
        few = per_query < k  # cannot hold k neighbours: search wider at once
        unresolved = [todo[few]]
        rank = torch.nonzero(~few).squeeze(1)
        rank = rank[torch.argsort(per_query[rank])]  # queries with similar counts share a table
        for lo, hi, width in _bands(per_query[rank], max_pairs):
            sel = rank[lo:hi]
            d2, idx = _chunk_knn(grid, q_all[todo[sel]], starts[sel], counts[sel], k, width)
            ok = (idx[:, -1] >= 0) & (d2[:, -1] <= reach[sel].square())
            ids = todo[sel]
            dist[ids[ok]] = d2[ok].sqrt()
            index[ids[ok]] = grid.order[idx[ok]]
            unresolved.append(ids[~ok])
        todo = torch.cat(unresolved) if unresolved else todo[:0]
    if todo.numel():
        d, i = brute_force_knn(grid.points, q_all[todo], k)
        dist[todo], index[todo] = d, grid.order[i]
    return dist, index


def nearest_within(grid: Grid, queries: torch.Tensor, radius: float, max_pairs: int = 1 << 25) -> torch.Tensor:
    """(Q,) int64 index of the nearest grid point within ``radius`` of each query, -1 where none is.

    Exact for ``radius <= grid.cell``: every point that near lies in the query's ``3 x 3 x 3`` block.
    """
    if radius > grid.cell * (1 + 1e-6):
        raise ValueError(f"radius {radius} exceeds the grid's cell {grid.cell}")
    q = queries.detach().to(grid.points.device, torch.float32).contiguous()
    out = torch.full((q.shape[0],), -1, dtype=torch.int64, device=q.device)
    starts, counts, _ = _block_cells(grid, q, 1)
    per_query = counts.sum(1)
    rank = torch.nonzero(per_query > 0).squeeze(1)
    rank = rank[torch.argsort(per_query[rank])]
    for lo, hi, width in _bands(per_query[rank], max_pairs):
        sel = rank[lo:hi]
        d2, idx = _chunk_knn(grid, q[sel], starts[sel], counts[sel], 1, width)
        near = (idx[:, 0] >= 0) & (d2[:, 0] <= radius * radius)
        out[sel] = torch.where(near, grid.order[idx[:, 0].clamp_min(0)], -1)
    return out


def _bands(counts: torch.Tensor, max_pairs: int) -> list[tuple[int, int, int]]:
    """Split ascending candidate counts into (start, end, width) ranges: counts within a power of two of
    the range's width (so a padded table wastes less than half), at most ``max_pairs`` entries per table."""
    n = counts.numel()
    if n == 0:
        return []
    top = int(counts[-1])
    powers = [1 << e for e in range(max(0, top).bit_length() + 1)]
    ends = torch.searchsorted(counts, torch.tensor(powers, device=counts.device), right=True).tolist()
    out, lo = [], 0
    for width, hi in zip(powers, ends, strict=True):
        step = max(1, max_pairs // max(1, width))
        for a in range(lo, hi, step):
            out.append((a, min(hi, a + step), width))
        lo = max(lo, hi)
    return out


def brute_force_knn(points: torch.Tensor, q: torch.Tensor, k: int, chunk_elements: int = 1 << 26
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact k nearest of ``q`` (Q, 3) among ``points`` (N, 3) on their device: ``cdist`` (no matmul
    shortcut, so no cancellation) and ``topk`` over chunks of at most ``chunk_elements`` distances.
    Returns (Q, k) distances ascending and (Q, k) int64 indices."""
    chunk = max(1, chunk_elements // max(1, points.shape[0]))
    ds, ids = [], []
    for s in range(0, q.shape[0], chunk):
        d = torch.cdist(q[s : s + chunk], points, compute_mode="donot_use_mm_for_euclid_dist")
        dk, ik = torch.topk(d, k, dim=1, largest=False, sorted=True)
        ds.append(dk)
        ids.append(ik)
    return torch.cat(ds), torch.cat(ids)
