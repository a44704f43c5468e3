"""Incremental voxel hash for the merge lookup of the global geometric memory.

A growing, moving point set is bucketed into cubic cells of side ``cell_size``, and the cells into
*bricks* of 4 x 4 x 4 cells:

* an open-addressing hash table (linear probing, load <= 1/3) maps a packed brick key to a dense
  brick id ``b``; the brick's cells are ``64 * b .. 64 * b + 63`` (local index ``16 x + 4 y + z``);
* each cell owns a run of a shared record *pool*: ``cells[c] = (offset, count, room)`` (int32),
  records ``offset .. offset + count - 1``; a record is a point id and a copy of the point's
  position, so a cell's candidates, coordinates included, are one contiguous run. A brick's cells
  are cleared when the brick is claimed, so the cell array grows without being filled.

A lookup probes the table once per brick it touches (the cells around a query share one brick
almost always), so empty space costs one probe and the neighbouring cells of an occupied one cost
none. Every change is local, O(points changed), never O(points stored):

* appending a point writes a record at the end of its cell's run; a full run moves to the end of
  the pool with twice the room (the old run is dead space);
* moving a point within its cell rewrites its record's copy;
* moving a point to another cell, or dropping it, moves its old cell's last record into its place
  and appends to the new cell.

The pool is repacked (:meth:`VoxelHashGrid.build` from the stored positions) when dead space passes
twice the live records. :meth:`VoxelHashGrid.nearest_within` is exact for any
``radius <= cell_size / 2``: the ball around a query then lies inside the 2 x 2 x 2 cells nearest to
it. The loops are compiled with numba; the lookup runs over the queries in parallel.
"""

from __future__ import annotations

import threading

import numba
import numpy as np

__all__ = ["VoxelHashGrid"]

_EMPTY = np.int64(-1)  # packed keys are non-negative, so -1 marks an empty slot
_BITS = 21  # bits per axis in a packed brick key (keys alias beyond +-2^20 bricks: only extra candidates)
_AXIS_MASK = np.int64((1 << _BITS) - 1)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MAX_LOAD = 3  # the table holds at most 1/_MAX_LOAD as many bricks as slots
_BRICK = 64  # cells per brick (4 x 4 x 4)
_MIN_RUN = 4  # room of a cell's first run
# One parallel kernel at a time per process: each already uses every core, and numba's fallback threading
# layer (workqueue, where neither OpenMP nor TBB is available) aborts the process on concurrent launches,
# which app sessions generating at once would make.
_PARALLEL = threading.Lock()


# ---------------------------------------------------------------------------- compiled helpers
@numba.njit(cache=True, inline="always")
def _cell_of(x, inv_cell):  # pragma: no cover - compiled
    """Integer cell coordinate of ``x`` on one axis."""
    return np.int64(np.floor(np.float64(x) * inv_cell))


@numba.njit(cache=True, inline="always")
def _brick_key(cx, cy, cz):  # pragma: no cover - compiled
    """Packed, non-negative key of the brick holding cell ``(cx, cy, cz)`` (arithmetic shifts: floor)."""
    return (((cx >> 2) & _AXIS_MASK) << (2 * _BITS)) | (((cy >> 2) & _AXIS_MASK) << _BITS) | ((cz >> 2) & _AXIS_MASK)


@numba.njit(cache=True, inline="always")
def _local(cx, cy, cz):  # pragma: no cover - compiled
    """Index of cell ``(cx, cy, cz)`` inside its brick, 0..63."""
    return ((cx & 3) << 4) | ((cy & 3) << 2) | (cz & 3)


@numba.njit(cache=True, inline="always")
def _axis_cells(x, inv_cell):  # pragma: no cover - compiled
    """(nearest cell, the neighbouring cell on the query's side, squared gap to that face in cells) on one axis."""
    f = np.float64(x) * inv_cell
    c = np.floor(f)
    frac = f - c
    g = 0.5 - abs(frac - 0.5)
    near = np.int64(c)
    return near, near + (-1 if frac < 0.5 else 1), g * g


@numba.njit(cache=True, nogil=True)
def _slot_of(key, table, mask, shift):  # pragma: no cover - compiled
    """The slot holding ``key``, or the empty slot where it would go (linear probing from its hash)."""
    slot = np.int64((np.uint64(key) * _GOLDEN) >> shift)
    while table[slot, 0] != key and table[slot, 0] != _EMPTY:
        slot = (slot + 1) & mask
    return slot


@numba.njit(cache=True, nogil=True, parallel=True)
def _nearest_kernel(q, inv_cell, radius, limit, table, table_bits, cells, pxyz, ppt, index, dist):  # pragma: no cover
    """Compiled body of :meth:`VoxelHashGrid.nearest_within`, parallel over the queries.

    Per query: the 2x2x2 cells nearest to it, its own cell first and the others by the number
    of faces between; a cell is skipped when its box is farther than ``limit`` squared cells or than the
    best candidate so far (a sure miss, with a 1e-5 relative margin for float32 rounding). A cell's brick
    is looked up once per distinct brick, and every record of the cell checked in float32 as
    ``dx*dx + dy*dy + dz*dz``; the smallest squared distance within ``radius`` wins, ties to the
    smallest point index. Writes ``index`` and ``dist`` in place.
    """
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    r2 = radius * radius
    to_cells = (1.0 + 1e-5) * inv_cell * inv_cell  # squared scene units -> squared cells, with the margin
    for i in numba.prange(q.shape[0]):
        qx, qy, qz = q[i, 0], q[i, 1], q[i, 2]
        nx, fx, gx = _axis_cells(qx, inv_cell)
        ny, fy, gy = _axis_cells(qy, inv_cell)
        nz, fz, gz = _axis_cells(qz, inv_cell)
        best_d = np.float32(np.inf)
        best_p = np.int64(-1)
        last_key = np.int64(-1)
        brick = np.int64(-1)
        bound = limit
        for t in range(8):
            corner = t ^ 7 if t == 3 or t == 4 else t  # 0, 1, 2, 4 (one face), 3, 5, 6 (two), 7
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
            if corner and reach > bound:
                continue
            key = _brick_key(kx, ky, kz)
            if key != last_key:
                last_key = key
                brick = table[_slot_of(key, table, mask, shift), 1]  # -1: an empty slot, no point in the brick
            if brick < 0:
                continue
            c = brick * _BRICK + _local(kx, ky, kz)
            o = cells[c, 0]
            for r in range(o, o + cells[c, 1]):  # the cell's records: contiguous coordinates
                dx = pxyz[r, 0] - qx
                dy = pxyz[r, 1] - qy
                dz = pxyz[r, 2] - qz
                d2 = dx * dx + dy * dy + dz * dz
                if d2 <= r2:
                    p = np.int64(ppt[r])
                    if d2 < best_d or (d2 == best_d and p < best_p):
                        best_d, best_p = d2, p
            if best_p >= 0:
                bound = min(limit, best_d * to_cells)
        index[i] = best_p
        dist[i] = np.sqrt(best_d) if best_p >= 0 else np.float32(np.inf)


@numba.njit(cache=True, nogil=True)
def _brick_order(xyz, inv_brick):  # pragma: no cover - compiled
    """A permutation of the points (M, 3) grouping those of one brick, bricks in (x, y, z) order
    modulo 64 bricks per axis: a counting sort on an 18-bit key, O(M + 2^18)."""
    m = xyz.shape[0]
    key = np.empty(m, np.int64)
    start = np.zeros((1 << 18) + 1, np.int64)
    for i in range(m):
        bx = np.int64(np.floor(np.float64(xyz[i, 0]) * inv_brick)) & 63
        by = np.int64(np.floor(np.float64(xyz[i, 1]) * inv_brick)) & 63
        bz = np.int64(np.floor(np.float64(xyz[i, 2]) * inv_brick)) & 63
        k = (bx << 12) | (by << 6) | bz
        key[i] = k
        start[k + 1] += 1
    for k in range(1 << 18):
        start[k + 1] += start[k]
    order = np.empty(m, np.int64)
    for i in range(m):
        order[start[key[i]]] = i
        start[key[i]] += 1
    return order


@numba.njit(cache=True, nogil=True)
def _remove_record(s, c, cells, pxyz, ppt, rec):  # pragma: no cover - compiled
    """Remove record ``s`` from cell ``c``: the cell's last record takes its place."""
    last = cells[c, 0] + cells[c, 1] - 1
    if s != last:
        pxyz[s, 0], pxyz[s, 1], pxyz[s, 2] = pxyz[last, 0], pxyz[last, 1], pxyz[last, 2]
        ppt[s] = ppt[last]
        rec[ppt[s]] = s
    cells[c, 1] -= 1


@numba.njit(cache=True, nogil=True, inline="always")
def _claim_brick(slot, key, table, cells, state):  # pragma: no cover - compiled
    """Give ``key`` the next brick id in the empty ``slot`` and clear the brick's cells; returns the id."""
    b = state[0]
    table[slot, 0] = key
    table[slot, 1] = b
    cells[b * _BRICK : (b + 1) * _BRICK, :] = 0
    state[0] = b + 1
    return b


@numba.njit(cache=True, nogil=True, parallel=True)
def _plan_kernel(pts, xyz, inv_cell, table, table_bits, pxyz, rec, plan):  # pragma: no cover - compiled
    """The parallel first pass of an update, for every item ``i`` (point ``pts[i]`` to ``xyz[i]``):

    a stored point that stays in its cell has its record's copy rewritten here (``plan[i] = -2``, done);
    otherwise ``plan[i]`` is its new cell if that cell's brick exists, else -1 (claimed later, in order).
    The items name distinct points, so no two write the same record; the table is only read.
    """
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    for i in numba.prange(pts.shape[0]):
        x, y, z = xyz[i, 0], xyz[i, 1], xyz[i, 2]
        cx, cy, cz = _cell_of(x, inv_cell), _cell_of(y, inv_cell), _cell_of(z, inv_cell)
        s = rec[pts[i]]
        if s >= 0 and (_cell_of(pxyz[s, 0], inv_cell) == cx and _cell_of(pxyz[s, 1], inv_cell) == cy
                       and _cell_of(pxyz[s, 2], inv_cell) == cz):
            pxyz[s, 0], pxyz[s, 1], pxyz[s, 2] = x, y, z  # a move within its cell: the record follows
            plan[i] = -2
            continue
        brick = table[_slot_of(_brick_key(cx, cy, cz), table, mask, shift), 1]
        plan[i] = brick * _BRICK + _local(cx, cy, cz) if brick >= 0 else -1


@numba.njit(cache=True, nogil=True)
def _place_kernel(first, order, plan, pts, xyz, inv_cell, table, table_bits, max_bricks, cells, pxyz, ppt, rec, pcell,
                  state):  # pragma: no cover - compiled
    """The sequential second pass of an update (after :func:`_plan_kernel`): for items ``i = order[first],
    order[first + 1], ..`` not done, a point without a record (``rec[p] < 0``) gets one in its cell, a stored
    point's record moves to its new cell; absent bricks are claimed.

    ``state`` = [bricks, pool end, dead pool slots], updated in place. Stops, before changing anything
    for item ``order[j]``, when it needs a brick past ``max_bricks`` or pool room past the pool's length,
    and returns ``j`` (the caller grows what ran out and calls again); returns ``len(pts)`` when done.
    """
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    last_key, last_brick = np.int64(-1), np.int64(-1)  # items come grouped by brick: one probe per new brick
    for j in range(first, pts.shape[0]):
        i = order[j]
        c = plan[i]
        if c == -2:
            continue
        p = pts[i]
        x, y, z = xyz[i, 0], xyz[i, 1], xyz[i, 2]
        if c < 0:  # its brick was absent in the first pass: an earlier item may have claimed it since
            cx, cy, cz = _cell_of(x, inv_cell), _cell_of(y, inv_cell), _cell_of(z, inv_cell)
            key = _brick_key(cx, cy, cz)
            if key != last_key:
                slot = _slot_of(key, table, mask, shift)
                brick = table[slot, 1]
                if brick < 0 and (state[0] >= max_bricks or state[1] + _MIN_RUN > pxyz.shape[0]):
                    return j
                if brick < 0:
                    brick = _claim_brick(slot, key, table, cells, state)
                last_key, last_brick = key, brick
            c = last_brick * _BRICK + _local(cx, cy, cz)
            plan[i] = c  # (kept if this call stops below and resumes)
        grow = max(_MIN_RUN, 2 * cells[c, 2])
        if cells[c, 1] == cells[c, 2] and state[1] + grow > pxyz.shape[0]:
            return j
        s = rec[p]
        if s >= 0:
            _remove_record(s, pcell[p], cells, pxyz, ppt, rec)
        n = cells[c, 1]
        if n == cells[c, 2]:  # full: the run moves to the end of the pool with twice the room
            o, e = cells[c, 0], state[1]
            for r in range(n):
                pxyz[e + r, 0], pxyz[e + r, 1], pxyz[e + r, 2] = pxyz[o + r, 0], pxyz[o + r, 1], pxyz[o + r, 2]
                ppt[e + r] = ppt[o + r]
                rec[ppt[e + r]] = e + r
            state[2] += cells[c, 2]
            cells[c, 0] = e
            cells[c, 2] = grow
            state[1] += grow
        r = cells[c, 0] + n
        pxyz[r, 0], pxyz[r, 1], pxyz[r, 2] = x, y, z
        ppt[r] = p
        rec[p] = r
        pcell[p] = c
        cells[c, 1] = n + 1
    return pts.shape[0]


@numba.njit(cache=True, nogil=True)
def _cells_kernel(first, xyz, inv_cell, table, table_bits, max_bricks, cells, state, pcell):  # pragma: no cover - compiled
    """Cell index of each point ``i = first ..`` into ``pcell``, claiming absent bricks (``state[0]`` counts
    them). Stops at the first point that needs a brick past ``max_bricks`` and returns its index."""
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    for i in range(first, xyz.shape[0]):
        cx, cy, cz = _cell_of(xyz[i, 0], inv_cell), _cell_of(xyz[i, 1], inv_cell), _cell_of(xyz[i, 2], inv_cell)
        key = _brick_key(cx, cy, cz)
        slot = _slot_of(key, table, mask, shift)
        if table[slot, 1] < 0:
            if state[0] >= max_bricks:
                return i
            _claim_brick(slot, key, table, cells, state)
        pcell[i] = table[slot, 1] * _BRICK + _local(cx, cy, cz)
    return xyz.shape[0]


@numba.njit(cache=True, nogil=True)
def _fill_kernel(xyz, pcell, cells, pxyz, ppt, rec):  # pragma: no cover - compiled
    """Write every point's record into its cell's run, in point order (the cells' counts start at 0)."""
    for p in range(xyz.shape[0]):
        c = pcell[p]
        r = cells[c, 0] + cells[c, 1]
        pxyz[r, 0], pxyz[r, 1], pxyz[r, 2] = xyz[p, 0], xyz[p, 1], xyz[p, 2]
        ppt[r] = p
        rec[p] = r
        cells[c, 1] += 1


@numba.njit(cache=True, nogil=True)
def _compact_kernel(keep, cells, pxyz, ppt, rec, pcell):  # pragma: no cover - compiled
    """Drop the records of points where ``keep`` is False, renumber the kept points ``0 ..`` in order."""
    n = keep.shape[0]
    for p in range(n):
        if not keep[p]:
            _remove_record(rec[p], pcell[p], cells, pxyz, ppt, rec)
    j = 0
    for p in range(n):
        if keep[p]:
            s = rec[p]
            rec[j] = s
            pcell[j] = pcell[p]
            ppt[s] = j
            j += 1


@numba.njit(cache=True, nogil=True)
def _rehash_kernel(old, table, table_bits):  # pragma: no cover - compiled
    """Insert every occupied slot of ``old`` into the empty ``table``."""
    mask = (np.int64(1) << table_bits) - 1
    shift = np.uint64(64 - table_bits)
    for s in range(old.shape[0]):
        if old[s, 0] != _EMPTY:
            slot = _slot_of(old[s, 0], table, mask, shift)
            table[slot, 0] = old[s, 0]
            table[slot, 1] = old[s, 1]


def _grow(arr: np.ndarray, size: int) -> np.ndarray:
    """``arr`` with its first axis at least ``size`` (capacity doubles), contents kept, new rows uninitialised."""
    if arr.shape[0] >= size:
        return arr
    out = np.empty((max(size, 2 * arr.shape[0], 1024),) + arr.shape[1:], dtype=arr.dtype)
    out[: arr.shape[0]] = arr
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
        self._inv_cell = 1.0 / self.cell_size
        self.build(np.zeros((0, 3), np.float32))

    # ------------------------------------------------------------------ public
    @property
    def num_points(self) -> int:
        return self._n

    def build(self, points: np.ndarray) -> None:
        """Replace the point set by ``points`` (N, 3).

        Each cell's run gets half again as much room as it holds; the table, the cell array and the
        pool get as much again as they hold (growth then doubles them), as the memory's buffers do.
        """
        points = np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3))
        n = points.shape[0]
        self._n = n
        self._state = np.zeros(3, np.int64)  # bricks, pool end, dead pool slots
        self._alloc_table(max(n // 128, 64))
        self._cells = np.empty((max(n // 128, 64) * _BRICK, 3), np.int32)  # (offset, count, room) per cell
        self._pcell = np.empty(max(2 * n, 1024), np.int32)  # point -> its cell
        first = 0
        while first < n:  # claim bricks, growing the table and the cell array as they fill
            first = _cells_kernel(first, points, self._inv_cell, self._table, self._table_bits, self._max_bricks(),
                                  self._cells, self._state, self._pcell)
            if first < n:
                self._make_room_for_bricks()
        bricks = int(self._state[0])
        self._built_bricks = bricks
        # room to grow: twice the bricks, and at least one per 16 points (new points often open bricks of their
        # own: far or sparse surfaces); the cell array is uninitialised, so unclaimed bricks cost no memory
        self._reserve_bricks(max(2 * bricks, n // 16))
        count = np.bincount(self._pcell[:n], minlength=bricks * _BRICK).astype(np.int32)
        room = count + (count >> 1) + (count > 0)
        cells = self._cells[: bricks * _BRICK]
        cells[:, 1] = 0
        cells[:, 2] = room
        if bricks:
            cells[0, 0] = 0
            np.cumsum(room[:-1], out=cells[1:, 0])
        self._state[1] = int(room.sum())
        self._pxyz = np.empty((max(2 * int(self._state[1]), 1024), 3), np.float32)
        self._ppt = np.empty(self._pxyz.shape[0], np.int32)
        self._rec = np.empty(self._pcell.shape[0], np.int32)  # point -> its record
        _fill_kernel(points, self._pcell, self._cells, self._pxyz, self._ppt, self._rec)

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
        ``append_points`` (P, 3) as indices ``num_points ..``; one compiled pass for both."""
        idx = np.zeros(0, np.int64) if move_indices is None else np.asarray(move_indices, np.int64).reshape(-1)
        mov = np.zeros((0, 3), np.float32) if move_points is None else np.asarray(move_points, np.float32).reshape(-1, 3)
        app = np.zeros((0, 3), np.float32) if append_points is None else np.asarray(append_points, np.float32).reshape(-1, 3)
        if idx.shape[0] != mov.shape[0]:
            raise ValueError(f"move_points must have {idx.shape[0]} rows, got {mov.shape[0]}")
        if idx.size and (idx.min() < 0 or idx.max() >= self._n):
            raise ValueError(f"move_indices must lie in [0, {self._n})")
        k, p = idx.shape[0], app.shape[0]
        if k + p == 0:
            return
        n0, n1 = self._n, self._n + p
        self._rec = _grow(self._rec, n1)
        self._pcell = _grow(self._pcell, n1)
        self._rec[n0:n1] = -1
        pts = np.concatenate([idx, np.arange(n0, n1, dtype=np.int64)])
        xyz = np.ascontiguousarray(np.concatenate([mov, app]))
        # grouped by brick: neighbouring items share bricks, cells and runs in cache (2x faster)
        order = _brick_order(xyz, 0.25 * self._inv_cell) if k + p > 4096 else np.arange(k + p)
        plan = np.empty(k + p, np.int64)
        with _PARALLEL:
            _plan_kernel(pts, xyz, self._inv_cell, self._table, self._table_bits, self._pxyz, self._rec, plan)
        first = 0
        while first < k + p:
            first = _place_kernel(first, order, plan, pts, xyz, self._inv_cell, self._table, self._table_bits, self._max_bricks(),
                                  self._cells, self._pxyz, self._ppt, self._rec, self._pcell, self._state)
            if first < k + p and self._state[0] >= self._max_bricks():  # out of bricks: double them, go on
                self._make_room_for_bricks()
            elif first < k + p:  # out of pool room: double the pool, go on
                self._pxyz = _grow(self._pxyz, self._pxyz.shape[0] + 1)
                self._ppt = _grow(self._ppt, self._pxyz.shape[0])
        self._n = n1
        if self._state[2] > 2 * self._n + 4096:  # mostly dead runs: repack
            self.build(self._positions())

    def compact(self, keep: np.ndarray) -> None:
        """Keep the points where ``keep`` (N,) bool is True, renumbered ``0 .. K - 1`` in order."""
        keep = np.ascontiguousarray(np.asarray(keep, bool).reshape(-1))
        if keep.shape[0] != self._n:
            raise ValueError(f"keep must have {self._n} entries, got {keep.shape[0]}")
        _compact_kernel(keep, self._cells, self._pxyz, self._ppt, self._rec, self._pcell)
        self._n = int(np.count_nonzero(keep))
        # repack when the runs or the bricks are mostly empty; bricks only once they doubled since the last
        # build, so that a sparse cloud (a point or two per brick) is not rebuilt at every eviction
        empty_bricks = self._state[0] > 2 * self._built_bricks and self._state[0] * _BRICK > 16 * self._n + 4096
        if self._state[1] > 4 * self._n + 4096 or empty_bricks:
            self.build(self._positions())

    def brick_order(self, points: np.ndarray) -> np.ndarray:
        """A permutation (M,) int64 of ``points`` (M, 3) that groups those in one brick (a counting sort, stable).

        Work done in this order finds bricks, cells and records in cache; :meth:`nearest_within` takes it.
        """
        return _brick_order(np.ascontiguousarray(np.asarray(points, dtype=np.float32).reshape(-1, 3)), 0.25 * self._inv_cell)

    def nearest_within(
        self, queries: np.ndarray, radius: float, order: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Nearest stored point of each query if it lies within ``radius``.

        Args:
            queries: (M, 3) points.
            radius: search radius, at most ``cell_size / 2``.
            order: optional :meth:`brick_order` of ``queries`` (computed here when omitted and M > 4096).
        Returns:
            index: (M,) int64 nearest point index, -1 where none is within ``radius`` (ties: the
                smallest index).
            distance: (M,) float32 its distance (inf where index is -1).
        """
        if radius > 0.5 * self.cell_size:
            raise ValueError(f"radius {radius} exceeds cell_size / 2 = {0.5 * self.cell_size}")
        q = np.ascontiguousarray(np.asarray(queries, dtype=np.float32).reshape(-1, 3))
        m = q.shape[0]
        if order is not None and np.shape(order) != (m,):
            raise ValueError(f"order must be a permutation of the {m} queries, got shape {np.shape(order)}")
        index = np.empty(m, np.int64)
        dist = np.empty(m, np.float32)
        if m == 0 or self._n == 0:
            index.fill(-1)
            dist.fill(np.inf)
            return index, dist
        limit = (1.0 + 1e-5) * (radius / self.cell_size) ** 2
        if order is None and m > 4096:  # queries grouped by brick share bricks, cells and records in cache:
            order = _brick_order(q, 0.25 * self._inv_cell)  # 200K queries over 1M points: 57 ms unsorted, 19 ms
        if order is not None:
            q = np.take(q, order, axis=0)
        with _PARALLEL:
            _nearest_kernel(q, self._inv_cell, np.float32(radius), limit, self._table, self._table_bits, self._cells,
                            self._pxyz, self._ppt, index, dist)
        if order is not None:
            index[order], dist[order] = index.copy(), dist.copy()
        return index, dist

    # ------------------------------------------------------------------ storage
    def _positions(self) -> np.ndarray:
        """(N, 3) stored positions, from the records."""
        return self._pxyz[self._rec[: self._n]]

    def _max_bricks(self) -> int:
        """How many bricks fit: the cell array's capacity and the table's load bound."""
        return min(self._cells.shape[0] // _BRICK, self._table.shape[0] // _MAX_LOAD)

    def _reserve_bricks(self, bricks: int) -> None:
        """Room for ``bricks`` bricks in the table and the cell array."""
        if bricks > self._table.shape[0] // _MAX_LOAD:
            old = self._table
            self._alloc_table(bricks)
            _rehash_kernel(old, self._table, self._table_bits)
        self._cells = _grow(self._cells, bricks * _BRICK)

    def _make_room_for_bricks(self) -> None:
        """Double the room for bricks if it is used up."""
        if self._state[0] >= self._max_bricks():
            self._reserve_bricks(2 * int(self._state[0]))

    def _alloc_table(self, bricks: int) -> None:
        """Empty table sized for ``bricks`` at most a third full: slot ``s`` holds ``(key, brick id)`` in ``_table[s]``."""
        size = 1 << max(10, int(np.ceil(np.log2(max(_MAX_LOAD * bricks, 2)))))
        self._table_bits = int(np.log2(size))
        self._table = np.full((size, 2), _EMPTY, np.int64)
