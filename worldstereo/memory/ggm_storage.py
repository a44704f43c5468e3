"""The GGM's per-point storage: buffers that grow, the voxel-hash merge, eviction past capacity, state_dict.

:class:`PointStorage` is a mixin of :class:`~worldstereo.memory.global_geometric.GlobalGeometricMemory`:
the public API (``initialize``, ``update``, ``observe``, ``query``, ``inject_to_latent``) lives there,
and these internals of the merge and the index here. Rows ``[0, _n)`` of every buffer in
:data:`STATE_BUFFERS` are the points; capacity doubles as points arrive.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from worldstereo.memory.voxel_hash import VoxelHashGrid

__all__ = ["CELL_MARGIN", "STATE_BUFFERS", "PointStorage", "edit_in_place", "put_rows", "to_numpy"]

#: per-point buffers, in state_dict order
STATE_BUFFERS = ("_pos", "_rgb", "_observer", "_count", "_last_seen", "_conf", "_embedding")
CELL_MARGIN = 4.02  # voxel cell side / merge threshold (exactness needs >= 2; of 2, 3 and 4, 4 was fastest)


class PointStorage:
    """Storage internals of the GGM (a mixin: the host defines the buffers, ``_n``, ``_grid`` and ``_changed``)."""

    # ------------------------------------------------------------------ state_dict
    def _save_to_state_dict(self, destination: dict, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        n_emb = self._n if bool(self._explicit_embedding) else 0
        for name in STATE_BUFFERS:
            rows = n_emb if name == "_embedding" else self._n
            t = getattr(self, name)[:rows]
            destination[prefix + name] = t if keep_vars else t.detach().clone()

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ) -> None:
        pos = state_dict.get(prefix + "_pos")
        if pos is not None and prefix + "_conf" not in state_dict:
            # snapshots written before point confidence existed: every point counts as observed
            state_dict[prefix + "_conf"] = torch.ones(int(pos.shape[0]))
        if pos is not None:
            n = int(pos.shape[0])
            for name in STATE_BUFFERS:
                src = state_dict.get(prefix + name)
                if src is not None:
                    cur = getattr(self, name)
                    setattr(self, name, torch.empty(src.shape, dtype=cur.dtype, device=cur.device))
            self._n = n
        for key in state_dict:
            if key.startswith(prefix + "latent_heads.c"):
                name = key[len(prefix + "latent_heads.") :].split(".")[0]
                if name not in self.latent_heads:
                    self._latent_head(int(name[1:]))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        self._grid = None
        self._changed()

    def _merge_grid(self, threshold: float) -> VoxelHashGrid:
        from worldstereo.memory.voxel_hash import VoxelHashGrid  # numba: imported when first needed

        g = self._grid
        if g is None or g.cell_size < CELL_MARGIN * threshold or g.cell_size > 4 * CELL_MARGIN * threshold:
            g = VoxelHashGrid(CELL_MARGIN * threshold)
            g.build(self.point_cloud.detach().cpu().numpy())
            self._grid = g
        return g

    def _merge_into(self, target: np.ndarray, order: np.ndarray, pts: np.ndarray, rgb: np.ndarray | None, feats: np.ndarray | None,
                    conf: np.ndarray, step: int, center: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Merge new point ``i`` into stored point ``target[i]`` (>= 0), ``i`` in ``order``: running means of position, colour
        (when ``rgb`` is given) and stored embedding (when ``feats`` is), count + 1, confidence kept at the
        higher, last-seen ``step`` and observer ``center``. Returns the distinct stored points merged into
        (U,) and their new positions (U, 3).

        Compiled, in place on NumPy views of the CPU buffers (a device's buffers merge in torch,
        :mod:`worldstereo.memory.ggm_device`).
        """
        from worldstereo.memory.merge_kernels import merge_observations

        none3 = np.zeros((0, 3), np.float32)
        explicit = feats is not None
        new_emb = np.ascontiguousarray(feats) if explicit else np.zeros((0, self.point_cloud_dim), np.float32)
        new_rgb = np.ascontiguousarray(rgb) if rgb is not None else none3
        bufs = [self._pos, self._rgb, self._embedding, self._count, self._conf, self._last_seen, self._observer]
        rows = [b.detach().numpy() for b in bufs]
        if not explicit:
            rows[2] = new_emb
        return merge_observations(target, order, pts, new_rgb, new_emb, conf, rows[0], rows[1], rows[2], rows[3], rows[4],
                                  rows[5], rows[6], step, center)

    def _reserve(self, size: int) -> None:
        """Grow every per-point buffer to hold ``size`` points (capacity doubles; contents kept)."""
        cap = self._pos.shape[0]
        if size <= cap:
            if bool(self._explicit_embedding) and self._embedding.shape[0] < cap:
                self._embedding = self._resized(self._embedding, cap)
            return
        new_cap = max(size, 2 * cap, 1024)
        for name in STATE_BUFFERS:
            if name == "_embedding" and not bool(self._explicit_embedding):
                continue
            setattr(self, name, self._resized(getattr(self, name), new_cap))

    def _resized(self, buf: torch.Tensor, rows: int) -> torch.Tensor:
        out = torch.zeros((rows,) + tuple(buf.shape[1:]), dtype=buf.dtype, device=buf.device)
        keep = min(self._n, buf.shape[0], rows)
        out[:keep] = buf[:keep]
        return out

    def _materialize_embeddings(self) -> None:
        emb = torch.zeros(self._pos.shape[0], self.point_cloud_dim, device=self._pos.device)
        if self._n:
            emb[: self._n] = self.encoder(self.point_cloud).detach()
        self._embedding = emb
        self._explicit_embedding.fill_(True)

    def _evict_past_capacity(self) -> int:
        """Drop the points seen longest ago until ``max_points`` remain; returns how many went. ``last_kept`` then holds
        the (N_before,) bool mask of the rows that stayed, in their order before (the history maps row ids with it)."""
        excess = self._n - self.max_points
        if excess <= 0:
            return 0
        if not edit_in_place(self._pos):
            from worldstereo.memory.ggm_device import evict_on_device

            self.last_kept = evict_on_device(self, excess, STATE_BUFFERS).cpu()
            return excess
        last = self.last_seen.detach().cpu().numpy()
        # the step of the excess-th oldest point, from a histogram of the steps (no sort)
        boundary = int(np.searchsorted(np.cumsum(np.bincount(last)), excess))
        keep = last > boundary
        same = np.flatnonzero(last == boundary)
        rem = excess - int(np.count_nonzero(last < boundary))
        pick = torch.linspace(0, same.shape[0] - 1, rem).round().long().numpy()  # evenly spaced among ties
        keep |= last == boundary
        keep[same[pick]] = False
        kept = int(self._n - excess)
        explicit = bool(self._explicit_embedding)
        for name in STATE_BUFFERS:
            if name == "_embedding" and not explicit:
                continue
            rows = getattr(self, name).detach().numpy()  # stable compaction in numpy (faster than torch on a busy CPU)
            rows[:kept] = np.compress(keep, rows[: self._n], axis=0)
        self._n = kept
        if self._grid is not None:
            self._grid.compact(keep)
        self.last_kept = torch.from_numpy(keep.copy())
        return excess


#: run the device path (:mod:`worldstereo.memory.ggm_device`) on CPU buffers too: the tests check it
#: against the compiled CPU path on a machine without a GPU
TORCH_PATH_ON_CPU = False


def edit_in_place(buf: torch.Tensor) -> bool:
    """Whether compiled kernels may edit ``buf`` through a NumPy view (a CPU tensor), else the torch device path runs."""
    return buf.device.type == "cpu" and not TORCH_PATH_ON_CPU


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float32 CPU numpy array of ``t`` (a view where ``t`` already is one)."""
    return t.detach().to("cpu", torch.float32).numpy()


def put_rows(buf: torch.Tensor, index: np.ndarray | slice, values: np.ndarray | float) -> None:
    """``buf[index] = values`` in place, through a NumPy view of a CPU buffer (rows ``index``: an index array or a slice)."""
    buf.detach().numpy()[index] = values
