"""Compiled bookkeeping of a GGM merge: running means of the stored points that new ones merge into.

Used by :meth:`GlobalGeometricMemory.update` on NumPy arrays: views of its CPU buffers, or rows
gathered from a device's buffers. One pass over the new points, O(new points), no sorting or
grouping: each merging point updates its target's running mean in place, in a given order.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["merge_observations", "observe_rows"]


@numba.njit(cache=True, nogil=True)
def merge_observations(target, order, new_pos, new_rgb, new_emb, new_conf, pos, rgb, emb, count, conf, last_seen,
                       observer, step, center):  # pragma: no cover - compiled
    """Merge new point ``i`` into stored row ``u = target[i]`` for every ``target[i] >= 0``, ``i`` in ``order``.

    Per merge, in float32 and in place: ``pos[u] = (pos[u] * c + new_pos[i]) / (c + 1)`` with ``c =
    count[u]`` (likewise ``rgb`` and ``emb``), ``count[u] = c + 1``, ``conf[u]`` the larger of its own and
    ``new_conf[i]``; the first merge into ``u`` also sets ``last_seen[u] = step`` and ``observer[u] = center``.
    Several merges into one row give the running mean of all of them.

    Args:
        target: (M,) int64 stored row of each new point, -1 where it does not merge.
        order: (M,) int64 a permutation: the order of the merges (rows near in memory near in order run
            faster; the running means do not depend on it beyond float32 rounding).
        new_pos, new_rgb, new_emb: (M, 3), (M, 3), (M, D) float32 observations; ``new_rgb`` or ``new_emb``
            with 0 rows: that attribute is left as it is.
        new_conf: (M,) float32 confidence of each new point.
        pos, rgb, emb: (N, 3), (N, 3), (N, D) float32 stored rows (``rgb``/``emb`` unused when their new
            values have 0 rows).
        count, last_seen: (N,) int64; every ``last_seen`` must be below ``step``.
        conf: (N,) float32. observer: (N, 3) float32. center: (3,) float32.
    Returns:
        rows: (U,) int64 the distinct rows merged into, in order of first merge.
        moved: (U, 3) float32 their new positions.
    """
    touched = np.empty(target.shape[0], np.int64)
    nt = 0
    has_rgb = new_rgb.shape[0] > 0
    has_emb = new_emb.shape[0] > 0
    for j in range(order.shape[0]):
        i = order[j]
        u = target[i]
        if u < 0:
            continue
        if last_seen[u] != step:  # first merge into u in this update
            last_seen[u] = step
            observer[u, 0], observer[u, 1], observer[u, 2] = center[0], center[1], center[2]
            touched[nt] = u
            nt += 1
        c = count[u]
        w = np.float32(c)
        den = np.float32(c + 1)
        for d in range(3):
            pos[u, d] = (pos[u, d] * w + new_pos[i, d]) / den
        if has_rgb:
            for d in range(3):
                rgb[u, d] = (rgb[u, d] * w + new_rgb[i, d]) / den
        if has_emb:
            for d in range(emb.shape[1]):
                emb[u, d] = (emb[u, d] * w + new_emb[i, d]) / den
        conf[u] = max(conf[u], new_conf[i])
        count[u] = c + 1
    moved = np.empty((nt, 3), np.float32)
    for j in range(nt):  # rows just written: in cache
        moved[j, 0], moved[j, 1], moved[j, 2] = pos[touched[j], 0], pos[touched[j], 1], pos[touched[j], 2]
    return touched[:nt].copy(), moved


@numba.njit(cache=True, nogil=True)
def observe_rows(indices, count, last_seen, observer, step, center):  # pragma: no cover - compiled
    """Stored rows seen again (``GlobalGeometricMemory.observe``): each distinct row of ``indices`` (K,) int64 gets
    ``count + 1``, ``last_seen = step`` and ``observer = center`` (3,), in place; duplicates count once.

    A row is new to this call while its ``last_seen`` is below ``step`` (every stored value must be), so no
    sort is needed. Returns the number of distinct rows.
    """
    distinct = 0
    for i in range(indices.shape[0]):
        u = indices[i]
        if last_seen[u] != step:
            last_seen[u] = step
            count[u] += 1
            observer[u, 0], observer[u, 1], observer[u, 2] = center[0], center[1], center[2]
            distinct += 1
    return distinct
