"""Incremental voxel hash for the merge lookup of the global geometric memory.

A growing, moving point set is bucketed into cubic cells of side ``cell_size``:

* an open-addressing hash table (linear probing, load <= 1/3) maps a packed cell key to a dense
  cell id;
* *records* (one per point, naming the point and holding a copy of its position) are kept sorted
  by cell id, with CSR offsets ``start[cell] .. start[cell + 1]``, so the candidates of a cell,
  coordinates included, are one contiguous run.

Appending points, moving points and dropping points (eviction) merge a batch of new records into
the sorted ones in one compiled pass, O(N + B log B), so the merge lookup of
:meth:`GlobalGeometricMemory.update` never rebuilds a tree over the memory.

A point that moves within its cell updates its record's copy; one that moves to another cell gets
a new record, and its old record goes *stale*: its position is set to infinity, so it is never
within a radius. Stale records cost time, never correctness; they are dropped when they pass a
quarter of the records.

:meth:`VoxelHashGrid.nearest_within` is exact for any ``radius <= cell_size / 2``: the ball around
a query then lies inside the 2x2x2 block of cells nearest to it. Its per-query loop (hash probes,
candidate distances) is compiled with numba and runs over the queries in parallel, in cell order.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["VoxelHashGrid"]

_EMPTY = np.int64(-1)  # packed keys are non-negative, so -1 marks an empty slot
_BITS = 21  # bits per axis in a packed cell key (keys alias beyond +-2^20 cells: only extra candidates)
_AXIS_MASK = np.int64((1 << _BITS) - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MAX_LOAD = 3  # the table holds at most 1/_MAX_LOAD as many cells as slots


@numba.njit(cache=True, nogil=True, parallel=True)
def _nearest_kernel(q, inv_cell, radius, limit, table, table_bits, start, rpt, rxyz, index, dist):  # pragma: no cover
    """Compiled body of :meth:`VoxelHashGrid.nearest_within` (numba), parallel over the queries.

    Per query: the 2x2x2 cells nearest to it (less those whose box is farther than ``limit`` squared
    cells), each looked up in the open-addressing table (linear probing), every record of a found
    cell checked in float32 as ``dx*dx + dy*dy + dz*dz``; the smallest squared distance within
    ``radius`` wins, ties to the smallest point index. Writes ``index`` and ``dist`` in place.
    """
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    r2 = radius * radius
    for i in numba.prange(q.shape[0]):
        qx, qy, qz = q[i, 0], q[i, 1], q[i, 2]
        nx, fx, gx = _axis_cells(qx, inv_cell)
        ny, fy, gy = _axis_cells(qy, inv_cell)
        nz, fz, gz = _axis_cells(qz, inv_cell)
        best_d = np.float32(np.inf)
        best_p = np.int64(-1)
        for corner in range(8):
            reach = 0.0
            kx, ky, kz = nx, ny, nz
            if corner & 4:
                kx = fx
                reach += gx
            if corner & 2:
                ky = fy
                reach += gy
            if corner & 1:
                kz = fz
                reach += gz
            if corner and reach > limit:
                continue
            key = (kx << (2 * _BITS)) | (ky << _BITS) | kz
            cid = table[_slot_of(key, table, mask, shift), 1]  # -1: an empty slot, the cell holds no point
            if cid < 0:
                continue
            for r in range(start[cid], start[cid + 1]):  # the cell's records: contiguous coordinates
                dx = rxyz[r, 0] - qx
                dy = rxyz[r, 1] - qy
                dz = rxyz[r, 2] - qz
                d2 = dx * dx + dy * dy + dz * dz
                if d2 <= r2:
                    p = np.int64(rpt[r])
                    if d2 < best_d or (d2 == best_d and p < best_p):
                        best_d, best_p = d2, p
        index[i] = best_p
        dist[i] = np.sqrt(best_d) if best_p >= 0 else np.float32(np.inf)


@numba.njit(cache=True, inline="always")
def _axis_cells(x, inv_cell):  # pragma: no cover - compiled
    """(nearest cell, the neighbouring cell on the query's side, squared gap to that face in cells) on one axis."""
    f = np.float64(x) * inv_cell
    c = np.floor(f)
    frac = f - c
    g = 0.5 - abs(frac - 0.5)
    near = np.int64(c) & _AXIS_MASK
    far = (near + (-1 if frac < 0.5 else 1)) & _AXIS_MASK
    return near, far, g * g


@numba.njit(cache=True, nogil=True)
def _slot_of(key, table, mask, shift):  # pragma: no cover - compiled
    """The slot holding ``key``, or the empty slot where it would go (linear probing from its hash)."""
    slot = np.int64((np.uint64(key) * _GOLDEN) >> shift)
    while table[slot, 0] != key and table[slot, 0] != _EMPTY:
        slot = (slot + 1) & mask
    return slot


@numba.njit(cache=True, nogil=True)
def _insert_kernel(keys, cells, table, table_bits):  # pragma: no cover - compiled
    """Write distinct ``keys`` (absent from the table) with cell ids ``cells`` into ``table``."""
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    for i in range(keys.shape[0]):
        slot = _slot_of(keys[i], table, mask, shift)
        table[slot, 0] = keys[i]
        table[slot, 1] = cells[i]


@numba.njit(cache=True, nogil=True)
def _find_or_insert_kernel(keys, table, table_bits, ncells, cid, new_keys):  # pragma: no cover - compiled
    """Cell id of each key into ``cid``; an absent key is inserted with id ``ncells + k`` (k-th new key, written
    to ``new_keys[k]``). The table must have an empty slot for every key. Returns the number of new keys."""
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    count = 0
    for i in range(keys.shape[0]):
        slot = _slot_of(keys[i], table, mask, shift)
        if table[slot, 0] == _EMPTY:
            table[slot, 0] = keys[i]
            table[slot, 1] = ncells + count
            new_keys[count] = keys[i]
            count += 1
        cid[i] = table[slot, 1]
    return count


@numba.njit(cache=True, nogil=True)
def _merge_records_kernel(rcell, rpt, rxyz, bcell, bpt, bxyz, out_cell, out_pt, out_xyz, rec):  # pragma: no cover
    """Merge the sorted records with a batch sorted by cell (existing records first among equal cells, as a
    stable sort of ``[records | batch]`` would), and point each live record's point at it in ``rec``."""
    n_old, n_new = rcell.shape[0], bcell.shape[0]
    i = j = 0
    for k in range(n_old + n_new):
        if j >= n_new or (i < n_old and rcell[i] <= bcell[j]):
            out_cell[k], out_pt[k] = rcell[i], rpt[i]
            out_xyz[k, 0], out_xyz[k, 1], out_xyz[k, 2] = rxyz[i, 0], rxyz[i, 1], rxyz[i, 2]
            i += 1
        else:
            out_cell[k], out_pt[k] = bcell[j], bpt[j]
            out_xyz[k, 0], out_xyz[k, 1], out_xyz[k, 2] = bxyz[j, 0], bxyz[j, 1], bxyz[j, 2]
            j += 1
        if np.isfinite(out_xyz[k, 0]):  # stale records (inf) name no live position
            rec[out_pt[k]] = k


def _grow(arr: np.ndarray, size: int) -> np.ndarray:
    """``arr`` with its last axis at least ``size`` (capacity doubles), contents kept."""
    if arr.shape[-1] >= size:
        return arr
    out = np.empty(arr.shape[:-1] + (max(size, 2 * arr.shape[-1], 1024),), dtype=arr.dtype)
    out[..., : arr.shape[-1]] = arr
    return out


class VoxelHashGrid:
    """Exact fixed-radius nearest-neighbour lookup over a growing, moving point set.

    Args:
        cell_size: cell side in scene units (> 0).

    Point ``i`` is the ``i``-th point appended; indices are stable until :meth:`build` or
    :meth:`compact`.
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
        self._n = n
        self._xyz = np.empty((3, max(n, 1024)), np.float32)  # structure of arrays: fast gathers
        self._xyz[:, :n] = points.T
        keys = self._keys(points)
        ckey, cell = np.unique(keys, return_inverse=True)
        self._ncells = ckey.shape[0]
        self._ckey = _grow(ckey, 1024)  # key of each cell id
        self._cell = _grow(cell.reshape(-1).astype(np.int32), 1024)  # cell id of each point
        self._alloc_table(self._ncells)
        self._insert_unique(ckey, np.arange(self._ncells))
        self._rec = np.empty(self._xyz.shape[1], np.int32)  # point -> its live record
        self._compactions = 0
        self._fresh_records()

    def append(self, points: np.ndarray) -> None:
        """Add ``points`` (P, 3) as indices ``num_points .. num_points + P - 1``."""
        self.update(append_points=points)

    def move(self, indices: np.ndarray, points: np.ndarray) -> None:
        """Set the positions of points ``indices`` (K,) to ``points`` (K, 3) (indices unique)."""
        self.update(indices, points)

    def update(
        self,
        move_indices: np.ndarray | None = None,
        move_points: np.ndarray | None = None,
        append_points: np.ndarray | None = None,
    ) -> None:
        """Move points ``move_indices`` (K,) (unique) to ``move_points`` (K, 3), then append
        ``append_points`` (P, 3) as indices ``num_points ..``; one record merge for both."""
        idx = np.zeros(0, np.int64) if move_indices is None else np.asarray(move_indices, np.int64).reshape(-1)
        mov = np.zeros((0, 3), np.float32) if move_points is None else np.asarray(move_points, np.float32).reshape(-1, 3)
        app = np.zeros((0, 3), np.float32) if append_points is None else np.asarray(append_points, np.float32).reshape(-1, 3)
        if idx.shape[0] != mov.shape[0]:
            raise ValueError(f"move_points must have {idx.shape[0]} rows, got {mov.shape[0]}")
        k, p = idx.shape[0], app.shape[0]
        if k + p == 0:
            return
        n0, n1 = self._n, self._n + p
        self._xyz = _grow(self._xyz, n1)
        self._cell = _grow(self._cell, n1)
        self._xyz[:, idx] = mov.T
        self._xyz[:, n0:n1] = app.T
        keys = self._keys(np.concatenate([mov, app]) if k and p else (mov if k else app))
        cells = np.empty(k + p, np.int32)
        cells[:k] = self._cell[idx]
        look = np.flatnonzero(self._ckey[cells[:k]] != keys[:k])  # moved to another cell
        look = np.concatenate([look, np.arange(k, k + p)])
        cells[look] = self._find_or_insert(keys[look])
        moved_cell = cells[:k] != self._cell[idx]
        changed = np.flatnonzero(moved_cell)
        stay = np.flatnonzero(~moved_cell)
        self._rxyz[self._rec[idx[stay]]] = mov[stay]  # a move within its cell: the record follows
        self._rxyz[self._rec[idx[changed]]] = np.inf  # the old record goes stale: never within a radius
        self._num_stale += changed.shape[0]
        self._cell[idx] = cells[:k]
        self._cell[n0:n1] = cells[k:]
        self._rec = _grow(self._rec, n1)
        self._n = n1
        new_pt = np.concatenate([idx[changed].astype(np.int32), np.arange(n0, n1, dtype=np.int32)])
        self._add_records(new_pt, np.concatenate([cells[:k][changed], cells[k:]]),
                          np.concatenate([mov[changed], app]))

    def compact(self, keep: np.ndarray) -> None:
        """Keep the points where ``keep`` (N,) bool is True, renumbered ``0 .. K - 1`` in order."""
        keep = np.asarray(keep, bool).reshape(-1)
        if keep.shape[0] != self._n:
            raise ValueError(f"keep must have {self._n} entries, got {keep.shape[0]}")
        new_id = np.cumsum(keep, dtype=np.int64) - 1
        new_id[~keep] = -1
        rpt = np.take(new_id, self._rpt)  # stale records still name valid points: kept
        live = rpt >= 0
        self._rpt, self._rcell, self._rxyz = rpt[live].astype(np.int32), self._rcell[live], self._rxyz[live]
        kept = int(np.count_nonzero(keep))
        self._xyz[:, :kept] = np.compress(keep, self._xyz[:, : self._n], axis=1)  # in place: capacity kept
        self._cell[:kept] = np.compress(keep, self._cell[: self._n])
        self._n = kept
        valid = np.flatnonzero(np.isfinite(self._rxyz[:, 0]))
        self._rec[self._rpt[valid]] = valid.astype(np.int32)
        self._set_offsets()
        self._compactions += 1
        if self._compactions % 64 == 0 and self._ncells > 4 * max(np.count_nonzero(np.diff(self._start)), 256):
            self.build(self._xyz[:, : self._n].T)  # now mostly empty cells: renumber

    def nearest_within(self, queries: np.ndarray, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Nearest stored point of each query if it lies within ``radius``.

        Args:
            queries: (M, 3) points.
            radius: search radius, at most ``cell_size / 2``.
        Returns:
            index: (M,) int64 nearest point index, -1 where none is within ``radius`` (ties: the
                smallest index).
            distance: (M,) float32 its distance (inf where index is -1).
        """
        if radius > 0.5 * self.cell_size:
            raise ValueError(f"radius {radius} exceeds cell_size / 2 = {0.5 * self.cell_size}")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, 3))
        m = q.shape[0]
        index = np.full(m, -1, np.int64)
        dist = np.full(m, np.inf, np.float32)
        if m == 0 or self._n == 0:
            return index, dist
        limit = (1.0 + 1e-5) * (radius / self.cell_size) ** 2
        # queries in cell order: neighbouring queries then share table slots, cells and records in cache
        # (200K queries over 1M points in random order: 105 ms; sorted first, 80 ms with the sort)
        order = np.argsort(self._keys(q), kind="stable") if m > 4096 else np.arange(m)
        qs = np.ascontiguousarray(q[order])
        idx_s, dist_s = np.empty(m, np.int64), np.empty(m, np.float32)
        _nearest_kernel(qs, 1.0 / self.cell_size, np.float32(radius), limit, self._table, self._table_bits,
                        self._start, self._rpt, self._rxyz, idx_s, dist_s)
        index[order], dist[order] = idx_s, dist_s
        return index, dist

    # ------------------------------------------------------------------ cells and keys
    def _keys(self, points: np.ndarray) -> np.ndarray:
        cell = np.floor(points.astype(np.float64) / self.cell_size).astype(np.int64)
        return ((cell[:, 0] & _AXIS_MASK) << (2 * _BITS)) | ((cell[:, 1] & _AXIS_MASK) << _BITS) | (cell[:, 2] & _AXIS_MASK)

    # ------------------------------------------------------------------ records
    def _set_offsets(self) -> None:
        self._start = np.zeros(self._ncells + 1, np.int64)
        np.cumsum(np.bincount(self._rcell, minlength=self._ncells), out=self._start[1:])

    def _fresh_records(self) -> None:
        """One record per point, sorted by cell id (no stale ones), with coordinates and the point -> record map."""
        n = self._n
        order = np.argsort(self._cell[:n], kind="stable")
        self._rpt = order.astype(np.int32)  # record -> point, sorted by cell id
        self._rcell = self._cell[:n][order]  # record -> cell id (sorted)
        self._rxyz = np.ascontiguousarray(self._xyz[:, order].T)  # record -> its point's position (R, 3)
        self._rec[order] = np.arange(n, dtype=np.int32)
        self._num_stale = 0
        self._set_offsets()

    def _add_records(self, points: np.ndarray, cells: np.ndarray, coords: np.ndarray) -> None:
        """Merge records for ``points`` (P,) int32 in ``cells`` (P,) int32 at ``coords`` (P, 3) into the sorted ones.

        Callers update ``_cell``, ``_xyz`` and ``_n`` first: past the stale limit every record is rebuilt
        from them instead (which covers ``points`` too and drops the stale records).
        """
        if 4 * self._num_stale > self._rcell.shape[0]:
            self._fresh_records()
            return
        order = np.argsort(cells, kind="stable")
        total = self._rcell.shape[0] + order.shape[0]
        out_cell, out_pt, out_xyz = np.empty(total, np.int32), np.empty(total, np.int32), np.empty((total, 3), np.float32)
        _merge_records_kernel(self._rcell, self._rpt, self._rxyz, np.ascontiguousarray(cells[order], np.int32),
                              np.ascontiguousarray(points[order], np.int32), np.ascontiguousarray(coords[order], np.float32),
                              out_cell, out_pt, out_xyz, self._rec)
        self._rcell, self._rpt, self._rxyz = out_cell, out_pt, out_xyz
        self._set_offsets()

    # ------------------------------------------------------------------ hash table
    def _alloc_table(self, cells: int) -> None:
        """Empty table sized for ``cells`` at most a third full: slot ``s`` holds ``(key, cell id)`` in ``_table[s]``."""
        size = 1 << max(10, int(np.ceil(np.log2(max(_MAX_LOAD * cells, 2)))))
        self._table_bits = int(np.log2(size))
        self._table = np.full((size, 2), _EMPTY, np.int64)

    def _insert_unique(self, keys: np.ndarray, cells: np.ndarray) -> None:
        """Insert distinct ``keys`` (absent from the table) with cell ids ``cells``."""
        _insert_kernel(np.ascontiguousarray(keys, np.int64), np.ascontiguousarray(cells, np.int64), self._table,
                       self._table_bits)

    def _find_or_insert(self, keys: np.ndarray) -> np.ndarray:
        """Cell id (int32) of each key; absent keys get new ids in order of first occurrence (equal keys share one)."""
        keys = np.ascontiguousarray(keys, np.int64)
        if _MAX_LOAD * (self._ncells + keys.shape[0]) > self._table.shape[0]:  # room for every key: rehash
            self._alloc_table(self._ncells + keys.shape[0])
            self._insert_unique(self._ckey[: self._ncells], np.arange(self._ncells))
        cid = np.empty(keys.shape[0], np.int32)
        new_keys = np.empty(keys.shape[0], np.int64)
        count = _find_or_insert_kernel(keys, self._table, self._table_bits, self._ncells, cid, new_keys)
        if count:
            self._ckey = _grow(self._ckey, self._ncells + count)
            self._ckey[self._ncells : self._ncells + count] = new_keys[:count]
            self._ncells += count
        return cid
