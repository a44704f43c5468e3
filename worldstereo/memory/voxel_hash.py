"""Incremental voxel hash for the merge lookup of the global geometric memory.

A growing point set is bucketed into cubic cells of side ``cell_size``. An open-addressing hash
table (linear probing) maps a cell key to the head of a linked list of *records*; a record names
one point. Appending points and moving points to other cells are O(points touched), so the merge
lookup of :meth:`GlobalGeometricMemory.update` never rebuilds a tree over the whole memory.

A point that moves to another cell gets a new record; its old record goes stale and is skipped
(it still names a valid point, whose true distance is checked, so stale records cost time, never
correctness). Records are rebuilt when stale ones outnumber live points.

:meth:`VoxelHashGrid.nearest_within` is exact for any ``radius <= cell_size / 2``: the ball
around a query then lies inside the 2x2x2 block of cells nearest to it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["VoxelHashGrid"]

_EMPTY = np.int64(-1)
_BITS = 21  # bits per axis in a packed cell key (keys alias beyond +-2^20 cells: only extra candidates)
_AXIS_MASK = np.int64((1 << _BITS) - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _grow(arr: np.ndarray, size: int, fill: int | float | None = None) -> np.ndarray:
    """``arr`` with its first axis at least ``size`` (capacity doubles), contents kept."""
    if arr.shape[0] >= size:
        return arr
    cap = max(size, 2 * arr.shape[0], 1024)
    out = np.empty((cap,) + arr.shape[1:], dtype=arr.dtype)
    out[: arr.shape[0]] = arr
    if fill is not None:
        out[arr.shape[0] :] = fill
    return out


class VoxelHashGrid:
    """Exact fixed-radius nearest-neighbour lookup over a growing, moving point set.

    Args:
        cell_size: cell side in scene units (> 0).

    Point ``i`` is the ``i``-th point appended (indices are stable until :meth:`build`).
    """

    def __init__(self, cell_size: float) -> None:
        if not (np.isfinite(cell_size) and cell_size > 0):
            raise ValueError(f"cell_size must be a positive finite number, got {cell_size!r}")
        self.cell_size = float(cell_size)
        self.build(np.zeros((0, 3), np.float32))

    # ------------------------------------------------------------------ public
    @property
    def num_points(self) -> int:
        return self._n

    def build(self, points: np.ndarray) -> None:
        """Replace the point set by ``points`` (N, 3)."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        n = points.shape[0]
        self._n = 0
        self._xyz = np.empty((3, max(n, 1024)), np.float32)  # structure of arrays: fast gathers
        self._key = np.empty(max(n, 1024), np.int64)  # current cell key per point
        self._rec_point = np.empty(max(n, 1024), np.int32)
        self._rec_next = np.empty(max(n, 1024), np.int32)
        self._num_recs = 0
        self._num_stale = 0
        self._alloc_table(max(2 * n, 1024))
        if n:
            self.append(points)

    def append(self, points: np.ndarray) -> None:
        """Add ``points`` (P, 3) as indices ``num_points .. num_points + P - 1``."""
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        p = points.shape[0]
        if p == 0:
            return
        n0, n1 = self._n, self._n + p
        if self._xyz.shape[1] < n1:
            xyz = np.empty((3, max(n1, 2 * self._xyz.shape[1])), np.float32)
            xyz[:, :n0] = self._xyz[:, :n0]
            self._xyz = xyz
        self._key = _grow(self._key, n1)
        self._xyz[:, n0:n1] = points.T
        keys = self._keys(points)
        self._key[n0:n1] = keys
        self._n = n1
        self._add_records(np.arange(n0, n1, dtype=np.int32), keys)

    def move(self, indices: np.ndarray, points: np.ndarray) -> None:
        """Set the positions of points ``indices`` (K,) to ``points`` (K, 3) (indices unique)."""
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size == 0:
            return
        points = np.asarray(points, dtype=np.float32).reshape(-1, 3)
        self._xyz[:, indices] = points.T
        keys = self._keys(points)
        changed = keys != self._key[indices]
        if changed.any():
            idx = indices[changed]
            self._key[idx] = keys[changed]
            self._num_stale += int(idx.size)
            if self._num_stale > max(self._n, 1024):
                self._rebuild_records()
            else:
                self._add_records(idx.astype(np.int32), keys[changed])

    def nearest_within(self, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Nearest stored point of each query if it lies within ``radius``.

        Args:
            queries: (M, 3) points.
            radius: search radius, at most ``cell_size / 2``.
        Returns:
            index: (M,) int64 nearest point index, -1 where none is within ``radius``.
            distance: (M,) float32 its distance (inf where index is -1).
        """
        if radius > 0.5 * self.cell_size:
            raise ValueError(f"radius {radius} exceeds cell_size / 2 = {0.5 * self.cell_size}")
        q = np.asarray(queries, dtype=np.float32).reshape(-1, 3)
        m = q.shape[0]
        index = np.full(m, -1, np.int64)
        dist = np.full(m, np.inf, np.float32)
        if m == 0 or self._n == 0:
            return index, dist
        f = q.astype(np.float64) / self.cell_size
        cell = np.floor(f)
        side = np.where(f - cell < 0.5, -1, 1).astype(np.int64)
        cell = cell.astype(np.int64)
        keys = np.empty((m, 8), np.int64)
        for c in range(8):
            dx, dy, dz = (c >> 2) & 1, (c >> 1) & 1, c & 1
            keys[:, c] = self._pack(cell[:, 0] + dx * side[:, 0], cell[:, 1] + dy * side[:, 1],
                                    cell[:, 2] + dz * side[:, 2])
        slots = self._lookup(keys.reshape(-1))
        best_d2 = np.full(m * 8, np.inf, np.float32)
        best_p = np.full(m * 8, -1, np.int64)
        pair = np.flatnonzero(slots >= 0)
        rec = self._head[slots[pair]]
        keep = rec >= 0
        pair, rec = pair[keep], rec[keep]
        qx, qy, qz = q[:, 0], q[:, 1], q[:, 2]
        x, y, z = self._xyz[0], self._xyz[1], self._xyz[2]
        while pair.size:
            pt = self._rec_point[rec]
            qi = pair >> 3
            d2 = (x[pt] - qx[qi]) ** 2 + (y[pt] - qy[qi]) ** 2 + (z[pt] - qz[qi]) ** 2
            better = d2 < best_d2[pair]
            best_d2[pair[better]] = d2[better]
            best_p[pair[better]] = pt[better]
            rec = self._rec_next[rec]
            keep = rec >= 0
            pair, rec = pair[keep], rec[keep]
        best_d2 = best_d2.reshape(m, 8)
        col = best_d2.argmin(axis=1)
        d2 = best_d2[np.arange(m), col]
        hit = d2 <= np.float32(radius) ** 2
        index[hit] = best_p.reshape(m, 8)[np.arange(m), col][hit]
        dist[hit] = np.sqrt(d2[hit])
        return index, dist

    # ------------------------------------------------------------------ cells and keys
    def _pack(self, ix: np.ndarray, iy: np.ndarray, iz: np.ndarray) -> np.ndarray:
        return ((ix & _AXIS_MASK) << (2 * _BITS)) | ((iy & _AXIS_MASK) << _BITS) | (iz & _AXIS_MASK)

    def _keys(self, points: np.ndarray) -> np.ndarray:
        cell = np.floor(points.astype(np.float64) / self.cell_size).astype(np.int64)
        return self._pack(cell[:, 0], cell[:, 1], cell[:, 2])

    # ------------------------------------------------------------------ hash table
    def _alloc_table(self, min_slots: int) -> None:
        size = 1 << max(10, int(np.ceil(np.log2(max(min_slots, 2)))))
        self._table_bits = int(np.log2(size))
        self._table_key = np.full(size, _EMPTY, np.int64)
        self._head = np.full(size, -1, np.int32)
        self._num_cells = 0

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        h = keys.view(np.uint64) * _GOLDEN
        return (h >> np.uint64(64 - self._table_bits)).astype(np.int64)

    def _lookup(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, -1 where absent."""
        mask = (1 << self._table_bits) - 1
        slot = self._hash(keys)
        tk = self._table_key[slot]
        hit = tk == keys
        out = np.where(hit, slot, -1)
        active = np.flatnonzero(~hit & (tk != _EMPTY))  # collided: probe on
        slot = slot[active]
        while active.size:
            slot = (slot + 1) & mask
            tk = self._table_key[slot]
            k = keys[active]
            hit = tk == k
            out[active[hit]] = slot[hit]
            go_on = ~hit & (tk != _EMPTY)
            active, slot = active[go_on], slot[go_on]
        return out

    def _find_or_insert(self, keys: np.ndarray) -> np.ndarray:
        """Slot of each key, claiming empty slots for new keys (duplicates in ``keys`` share one)."""
        mask = (1 << self._table_bits) - 1
        slot = self._hash(keys)
        out = np.full(keys.shape[0], -1, np.int64)
        active = np.arange(keys.shape[0])
        while active.size:
            s = slot[active]
            k = keys[active]
            tk = self._table_key[s]
            empty = tk == _EMPTY
            if empty.any():  # claim: last write wins; every entry of the winning key reads it back
                self._table_key[s[empty]] = k[empty]
                tk = self._table_key[s]
                self._num_cells += int(np.unique(s[empty & (tk == k)]).size)
            hit = tk == k
            out[active[hit]] = s[hit]
            active = active[~hit]
            slot[active] = (s[~hit] + 1) & mask
        return out

    def _rebuild_records(self) -> None:
        """Fresh table and one record per point from the current keys (drops stale records)."""
        n = self._n
        if self._table_key.shape[0] < 2 * n:
            self._alloc_table(2 * n)
        else:
            self._table_key.fill(_EMPTY)
            self._head.fill(-1)
            self._num_cells = 0
        self._num_recs = 0
        self._num_stale = 0
        if n:
            self._add_records(np.arange(n, dtype=np.int32), self._key[:n])

    def _add_records(self, points: np.ndarray, keys: np.ndarray) -> None:
        """New records for ``points`` (P,) in the cells ``keys`` (P,), prepended to their lists.

        Callers update ``_key`` / ``_n`` first: when the table would pass half load, everything is
        rebuilt from the current keys instead (which covers ``points`` too).
        """
        if 2 * (self._num_cells + keys.shape[0]) > self._table_key.shape[0]:
            self._alloc_table(2 * max(self._n, self._num_cells + keys.shape[0]))
            self._rebuild_records()
            return
        slots = self._find_or_insert(keys)
        r0, r1 = self._num_recs, self._num_recs + points.shape[0]
        self._rec_point = _grow(self._rec_point, r1)
        self._rec_next = _grow(self._rec_next, r1)
        recs = np.arange(r0, r1, dtype=np.int32)
        self._rec_point[r0:r1] = points
        self._num_recs = r1
        order = np.argsort(slots, kind="stable")
        s, r = slots[order], recs[order]
        last = np.ones(s.shape[0], bool)
        last[:-1] = s[1:] != s[:-1]
        first = np.ones(s.shape[0], bool)
        first[1:] = last[:-1]
        nxt = np.empty(s.shape[0], np.int32)
        nxt[:-1] = r[1:]
        nxt[last] = self._head[s[last]]
        self._rec_next[r] = nxt
        self._head[s[first]] = r[first]
