"""Spatial-Stereo Memory (SSM): a bank of keyframe tokens whose attention is limited by 3D correspondence.

An entry is one token of a stored keyframe: a feature ``(D,)``, ``K = num_correspondences`` world
points sampled inside the token's patch, their confidences, and metadata (frame index, camera,
pixel box). Correspondences with confidence below ``correspondence_threshold`` are ignored
everywhere (attention mask, retrieval, importance).

Constrained attention (DESIGN.md, "The memories"): query ``(b, n)`` may attend to entry ``m`` only
where one of the entry's valid correspondences, projected into the query camera, lands within
``attention_window`` pixels of the query's own projection (Chebyshev distance: a square window of
half-width ``attention_window``), in front of the camera and at a consistent depth
(``|z_corr - z_query| <= depth_tolerance * z_query``; a correspondence behind the query's surface
is occluded). Attention is scaled dot product (``1 / sqrt(D)``) with keys = values = the stored
features and no projections, so the output is a convex combination of stored features (the
pipeline decodes it back to pixels). Rows with no allowed entry give zero output and weights.

Replacement when full: ``fifo`` evicts the oldest write; ``lru`` the entry least recently written,
attended (weight > 0) or retrieved; ``importance_based`` the lowest mean valid confidence plus the
attention mass received (sum of its attention weights over every query row of every call). Ties go
to the oldest write.

All state lives in buffers (``.to(device)``, ``state_dict``); unknown metadata keys live in a plain
per-slot dict that travels in ``state_dict`` as extra state.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from worldstereo.camera import CameraParameters, check_finite, check_rotation
from worldstereo.memory.correspondence_mask import (
    correspondence_mask,
    correspondence_mask_reference,
    spatial_row_keys,
)
from worldstereo.memory.masked_attention import masked_attention
from worldstereo.memory.ssm_entries import (
    SSMEntryMetadata,
    as_tensor,
    float_input,
    positive_int,
)

__all__ = ["SSMEntryMetadata", "SpatialStereoMemory", "UPDATE_STRATEGIES"]

UPDATE_STRATEGIES = ("fifo", "lru", "importance_based")
# Metadata keys with a dedicated buffer; any other key goes to the per-slot ``extra`` dict.
_KNOWN_METADATA = ("frame_index", "camera", "pixel_boxes")
# Bound on (query, correspondence) distances evaluated at once by ``retrieve``.
_RETRIEVE_PAIRS_PER_CHUNK = 4_000_000


class SpatialStereoMemory(nn.Module):
    """Bank of ``memory_size`` keyframe tokens with 3D correspondences (see the module docstring).

    Args:
        memory_size: number of slots ``M``.
        feature_dim: feature size ``D``.
        num_correspondences: world points per entry ``K``.
        attention_window: Chebyshev radius, in query-camera pixels, within which a correspondence
            must project from the query's own projection.
        correspondence_threshold: correspondences with a lower confidence are ignored.
        update_strategy: ``"fifo"``, ``"lru"`` or ``"importance_based"``.
        depth_tolerance: (keyword) relative depth tolerance of the occlusion test.
    """

    def __init__(
        self,
        memory_size: int = 1024,
        feature_dim: int = 768,
        num_correspondences: int = 64,
        attention_window: int = 7,
        correspondence_threshold: float = 0.5,
        update_strategy: str = "fifo",
        *,
        depth_tolerance: float = 0.05,
    ) -> None:
        super().__init__()
        self.memory_size = positive_int("memory_size", memory_size)
        self.feature_dim = positive_int("feature_dim", feature_dim)
        self.num_correspondences = positive_int("num_correspondences", num_correspondences)
        self.attention_window = positive_int("attention_window", attention_window)
        if isinstance(correspondence_threshold, bool) or not isinstance(correspondence_threshold, (int, float)) \
                or not math.isfinite(correspondence_threshold):
            raise ValueError(f"correspondence_threshold must be a finite number, got {correspondence_threshold!r}")
        self.correspondence_threshold = float(correspondence_threshold)
        if update_strategy not in UPDATE_STRATEGIES:
            raise ValueError(f"update_strategy must be one of {UPDATE_STRATEGIES}, got {update_strategy!r}")
        self.update_strategy = update_strategy
        if isinstance(depth_tolerance, bool) or not isinstance(depth_tolerance, (int, float)) \
                or not math.isfinite(depth_tolerance) or depth_tolerance < 0:
            raise ValueError(f"depth_tolerance must be a finite number >= 0, got {depth_tolerance!r}")
        self.depth_tolerance = float(depth_tolerance)

        M, D, K = self.memory_size, self.feature_dim, self.num_correspondences
        self.register_buffer("features", torch.zeros(M, D))
        self.register_buffer("correspondences", torch.zeros(M, K, 3))
        self.register_buffer("confidence", torch.zeros(M, K))
        self.register_buffer("occupied", torch.zeros(M, dtype=torch.bool))
        self.register_buffer("write_order", torch.zeros(M, dtype=torch.int64))
        self.register_buffer("write_step", torch.zeros(M, dtype=torch.int64))
        self.register_buffer("last_use_step", torch.zeros(M, dtype=torch.int64))
        self.register_buffer("attention_mass", torch.zeros(M))
        self.register_buffer("frame_index", torch.full((M,), -1, dtype=torch.int64))
        self.register_buffer("has_camera", torch.zeros(M, dtype=torch.bool))
        self.register_buffer("camera_w2c", torch.eye(4).repeat(M, 1, 1))
        self.register_buffer("camera_intrinsics", torch.zeros(M, 3, 3))
        self.register_buffer("image_size", torch.zeros(M, 2, dtype=torch.int64))
        self.register_buffer("pixel_boxes", torch.full((M, 4), float("nan")))
        self.register_buffer("clock", torch.zeros((), dtype=torch.int64))  # one tick per operation
        self.register_buffer("num_writes", torch.zeros((), dtype=torch.int64))  # entries ever written
        self._extra: dict[int, dict[str, Any]] = {}

    def extra_repr(self) -> str:
        return (
            f"memory_size={self.memory_size}, feature_dim={self.feature_dim}, "
            f"num_correspondences={self.num_correspondences}, attention_window={self.attention_window}, "
            f"correspondence_threshold={self.correspondence_threshold}, "
            f"update_strategy={self.update_strategy!r}, depth_tolerance={self.depth_tolerance}"
        )

    # ------------------------------------------------------------------ extra state (unknown metadata)
    def get_extra_state(self) -> dict[str, Any]:
        return {"extra": {int(k): dict(v) for k, v in self._extra.items()}}

    def set_extra_state(self, state: dict[str, Any]) -> None:
        self._extra = {int(k): dict(v) for k, v in state.get("extra", {}).items()}

    # ------------------------------------------------------------------ properties
    @property
    def memory_bank(self) -> torch.Tensor:
        """(memory_size, feature_dim) stored features; zeros in empty slots. Shares storage: do not edit."""
        return self.features

    @property
    def correspondence_map(self) -> torch.Tensor:
        """(memory_size, num_correspondences, 3) world correspondences; zeros in empty slots."""
        return self.correspondences

    @property
    def occupied_mask(self) -> torch.Tensor:
        """(memory_size,) bool, True for slots holding an entry."""
        return self.occupied

    @property
    def num_entries(self) -> int:
        """Number of occupied slots."""
        return int(self.occupied.sum())

    @property
    def occupancy(self) -> float:
        """Fraction of slots in use, in [0, 1]."""
        return self.num_entries / self.memory_size

    @property
    def valid_correspondences(self) -> torch.Tensor:
        """(memory_size, num_correspondences) bool: stored and confidence >= correspondence_threshold."""
        return self.occupied[:, None] & (self.confidence >= self.correspondence_threshold)

    @property
    def mean_valid_confidence(self) -> torch.Tensor:
        """(memory_size,) mean confidence of each entry's valid correspondences (0 if none)."""
        valid = self.valid_correspondences
        total = torch.where(valid, self.confidence, torch.zeros_like(self.confidence)).sum(-1)
        return total / valid.sum(-1).clamp(min=1).to(total.dtype)

    @property
    def importance(self) -> torch.Tensor:
        """(memory_size,) ``importance_based`` score: mean valid confidence + attention mass received."""
        return self.mean_valid_confidence + self.attention_mass

    @property
    def entry_frames(self) -> torch.Tensor:
        """(memory_size,) int64 frame index per slot; -1 where unknown or empty."""
        return self.frame_index

    @property
    def entry_boxes(self) -> torch.Tensor:
        """(memory_size, 4) pixel box ``x0, y0, x1, y1`` per slot; NaN where unknown or empty."""
        return self.pixel_boxes

    @property
    def entry_cameras(self) -> torch.Tensor:
        """(memory_size, 4, 4) world-to-camera of each entry's frame; see ``has_camera`` for which are known."""
        return self.camera_w2c

    def entry_metadata(self, indices: Any = None) -> SSMEntryMetadata:
        """Metadata of the slots ``indices`` (int, sequence or (n,) tensor; default: occupied slots)."""
        if indices is None:
            idx = torch.where(self.occupied)[0]
        else:
            idx = as_tensor("indices", indices).reshape(-1)
            if idx.is_floating_point() or idx.dtype == torch.bool:
                raise ValueError(f"indices must be integers, got dtype {idx.dtype}")
            idx = idx.to(device=self.occupied.device, dtype=torch.int64)
            if idx.numel() and (int(idx.min()) < 0 or int(idx.max()) >= self.memory_size):
                raise ValueError(f"indices must lie in [0, {self.memory_size}), got {idx.tolist()}")
        return SSMEntryMetadata(
            indices=idx,
            occupied=self.occupied[idx],
            frame_index=self.frame_index[idx],
            has_camera=self.has_camera[idx],
            w2c=self.camera_w2c[idx],
            intrinsics=self.camera_intrinsics[idx],
            image_size=self.image_size[idx],
            pixel_boxes=self.pixel_boxes[idx],
            write_step=self.write_step[idx],
            last_use_step=self.last_use_step[idx],
            attention_mass=self.attention_mass[idx],
            mean_confidence=self.mean_valid_confidence[idx],
            extra=[dict(self._extra.get(int(i), {})) for i in idx],
        )

    # ------------------------------------------------------------------ writing
    @torch.no_grad()
    def clear(self) -> None:
        """Empty the bank and reset every counter and piece of metadata."""
        for name in ("features", "correspondences", "confidence", "attention_mass", "camera_intrinsics"):
            getattr(self, name).zero_()
        for name in ("occupied", "has_camera"):
            getattr(self, name).fill_(False)
        for name in ("write_order", "write_step", "last_use_step", "image_size", "clock", "num_writes"):
            getattr(self, name).zero_()
        self.frame_index.fill_(-1)
        self.pixel_boxes.fill_(float("nan"))
        self.camera_w2c.copy_(torch.eye(4, dtype=self.camera_w2c.dtype).expand_as(self.camera_w2c))
        self._extra = {}

    def _select_slots(self, n: int) -> torch.Tensor:
        """(n,) slots for a new batch: free slots first (lowest index), then victims by strategy."""
        free = torch.where(~self.occupied)[0]
        if free.numel() >= n:
            return free[:n]
        taken = torch.where(self.occupied)[0]
        # Lexicographic order: primary key by strategy, ties to the oldest write.
        order = taken[torch.argsort(self.write_order[taken], stable=True)]
        if self.update_strategy == "lru":
            order = order[torch.argsort(self.last_use_step[order], stable=True)]
        elif self.update_strategy == "importance_based":
            order = order[torch.argsort(self.importance[order], stable=True)]
        return torch.cat([free, order[: n - free.numel()]])

    @torch.no_grad()
    def add_to_memory(
        self,
        features: torch.Tensor,
        correspondences: torch.Tensor,
        confidence: torch.Tensor,
        metadata: dict[str, Any] | None = None,
    ) -> list[int]:
        """Store ``N`` entries; returns their ``N`` distinct slot indices.

        Free slots are used first; when there are too few, occupied slots are replaced following
        ``update_strategy``. Replaced slots lose all their previous state.

        Args:
            features: (N, feature_dim).
            correspondences: (N, num_correspondences, 3) world points.
            confidence: (N, num_correspondences).
            metadata: optional dict; known keys: ``"frame_index"`` int or (N,) ints,
                ``"camera"`` (4, 4) / (N, 4, 4) world-to-camera or a ``CameraParameters`` of 1 or N
                cameras, ``"pixel_boxes"`` (4,) / (N, 4) ``x0, y0, x1, y1``. Other keys are kept
                as given in a per-slot dict (see :meth:`entry_metadata`).
        Raises:
            ValueError: bad shapes, NaN/inf, ``N > memory_size``, or bad metadata.
        """
        D, K = self.feature_dim, self.num_correspondences
        feats = float_input("features", features, (None, D), f"(N, {D})")
        n = feats.shape[0]
        corr = float_input("correspondences", correspondences, (n, K, 3), f"(N={n}, {K}, 3)")
        conf = float_input("confidence", confidence, (n, K), f"(N={n}, {K})")
        if n > self.memory_size:
            raise ValueError(f"features holds {n} entries, more than memory_size={self.memory_size}")
        meta = self._parse_metadata(metadata, n)
        if n == 0:
            return []

        slots = self._select_slots(n)
        self.clock += 1
        dev, dt = self.features.device, self.features.dtype
        self.features[slots] = feats.to(device=dev, dtype=dt)
        self.correspondences[slots] = corr.to(device=dev, dtype=dt)
        self.confidence[slots] = conf.to(device=dev, dtype=dt)
        self.occupied[slots] = True
        self.write_order[slots] = self.num_writes + torch.arange(1, n + 1, device=dev)
        self.num_writes += n
        self.write_step[slots] = self.clock
        self.last_use_step[slots] = self.clock
        self.attention_mass[slots] = 0.0
        self.frame_index[slots] = meta["frame_index"].to(dev)
        self.has_camera[slots] = meta["has_camera"].to(dev)
        self.camera_w2c[slots] = meta["w2c"].to(device=dev, dtype=self.camera_w2c.dtype)
        self.camera_intrinsics[slots] = meta["intrinsics"].to(device=dev, dtype=self.camera_intrinsics.dtype)
        self.image_size[slots] = meta["image_size"].to(dev)
        self.pixel_boxes[slots] = meta["pixel_boxes"].to(device=dev, dtype=self.pixel_boxes.dtype)
        slot_list = [int(s) for s in slots.tolist()]
        for s in slot_list:
            if meta["extra"]:
                self._extra[s] = dict(meta["extra"])
            else:
                self._extra.pop(s, None)
        return slot_list

    def _parse_metadata(self, metadata: dict[str, Any] | None, n: int) -> dict[str, Any]:
        if metadata is None:
            metadata = {}
        if not isinstance(metadata, dict):
            raise ValueError(f"metadata must be a dict or None, got {type(metadata).__name__}")
        out: dict[str, Any] = {
            "frame_index": torch.full((n,), -1, dtype=torch.int64),
            "has_camera": torch.zeros(n, dtype=torch.bool),
            "w2c": torch.eye(4).repeat(n, 1, 1),
            "intrinsics": torch.zeros(n, 3, 3),
            "image_size": torch.zeros(n, 2, dtype=torch.int64),
            "pixel_boxes": torch.full((n, 4), float("nan")),
            "extra": {k: v for k, v in metadata.items() if k not in _KNOWN_METADATA},
        }
        if metadata.get("frame_index") is not None:
            fi = as_tensor("metadata['frame_index']", metadata["frame_index"])
            if fi.is_floating_point() or fi.dtype == torch.bool or fi.ndim > 1 or (fi.ndim == 1 and fi.numel() != n):
                raise ValueError(f"metadata['frame_index'] must be an int or (N={n},) ints, got {fi.dtype} {tuple(fi.shape)}")
            out["frame_index"] = fi.to(torch.int64).reshape(-1).expand(n).clone()
        cam = metadata.get("camera")
        if cam is not None:
            if isinstance(cam, CameraParameters):
                if len(cam) not in (1, n):
                    raise ValueError(f"metadata['camera'] must hold 1 or N={n} cameras, got {len(cam)}")
                out["w2c"] = cam.extrinsics.detach().cpu().float().expand(n, 4, 4).clone()
                out["intrinsics"] = cam.intrinsics.detach().cpu().float().expand(n, 3, 3).clone()
                out["image_size"] = torch.tensor([cam.width, cam.height], dtype=torch.int64).expand(n, 2).clone()
            else:
                T = as_tensor("metadata['camera']", cam)
                if T.ndim == 2:
                    T = T.unsqueeze(0)
                if T.ndim != 3 or T.shape[-2:] != (4, 4) or T.shape[0] not in (1, n):
                    raise ValueError(
                        f"metadata['camera'] must be a (4, 4) or (N={n}, 4, 4) world-to-camera, got {tuple(T.shape)}"
                    )
                T = T.detach().cpu().float()
                check_finite("metadata['camera']", T)
                check_rotation("metadata['camera']", T[:, :3, :3])
                out["w2c"] = T.expand(n, 4, 4).clone()
            out["has_camera"] = torch.ones(n, dtype=torch.bool)
        if metadata.get("pixel_boxes") is not None:
            box = as_tensor("metadata['pixel_boxes']", metadata["pixel_boxes"])
            if box.ndim == 1:
                box = box.unsqueeze(0)
            if box.ndim != 2 or box.shape[-1] != 4 or box.shape[0] not in (1, n):
                raise ValueError(f"metadata['pixel_boxes'] must have shape (4,) or (N={n}, 4), got {tuple(box.shape)}")
            box = box.detach().cpu().float()
            check_finite("metadata['pixel_boxes']", box)
            out["pixel_boxes"] = box.expand(n, 4).clone()
        return out

    # ------------------------------------------------------------------ reading
    def _check_query_points(self, query_points: Any) -> torch.Tensor:
        pts = float_input("query_points", query_points, (None, None, 3), "(B, N, 3)")
        return pts.to(device=self.features.device)

    def _check_camera(self, camera_params: Any, batch: int) -> CameraParameters:
        if not isinstance(camera_params, CameraParameters):
            raise ValueError(f"camera_params must be a CameraParameters, got {type(camera_params).__name__}")
        if len(camera_params) not in (1, batch):
            raise ValueError(f"camera_params must hold 1 or B={batch} cameras, got {len(camera_params)}")
        return camera_params.to(self.features.device)

    def _check_attention_inputs(
        self, query: Any, query_points: Any, camera_params: Any
    ) -> tuple[torch.Tensor, torch.Tensor, CameraParameters]:
        D = self.feature_dim
        q = float_input("query", query, (None, None, D), f"(B, N, {D})")
        pts = float_input("query_points", query_points, (q.shape[0], q.shape[1], 3), f"(B={q.shape[0]}, N={q.shape[1]}, 3)")
        cam = self._check_camera(camera_params, q.shape[0])
        dev = self.features.device
        return q.to(device=dev, dtype=self.features.dtype), pts.to(dev), cam

    def _projections(
        self, query_points: torch.Tensor, camera: CameraParameters
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Query and correspondence projections in the query cameras.

        Returns query_uv (B, N, 2), query_depth (B, N), corr_uv (B, M, K, 2), corr_depth (B, M, K).
        """
        B = query_points.shape[0]
        M, K = self.memory_size, self.num_correspondences
        # One working precision for camera and points; one 3 x 4 matrix K [R | t] per camera, so
        # a world point projects in two tensor ops (and identically for queries and entries).
        dt = torch.promote_types(torch.promote_types(camera.dtype, query_points.dtype), self.correspondences.dtype)
        P = camera.intrinsics.to(dt) @ camera.extrinsics[:, :3, :].to(dt)  # (Bc, 3, 4)

        def project(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pix = torch.baddbmm(P[:, None, :, 3], points.to(dt).expand(P.shape[0], -1, -1), P[:, :, :3].transpose(1, 2))
            z = pix[..., 2]
            return pix[..., :2] / z[..., None], z  # depth <= 0 gives meaningless uv: callers mask it

        N = query_points.shape[1]
        if P.shape[0] == 1:  # one camera for the whole batch
            q_uv, q_z = project(query_points.reshape(1, B * N, 3))
            q_uv, q_z = q_uv.view(B, N, 2), q_z.view(B, N)
        else:
            q_uv, q_z = project(query_points)
        c_uv, c_z = project(self.correspondences.reshape(1, M * K, 3))
        c_uv = c_uv.expand(B, -1, -1).reshape(B, M, K, 2)
        c_z = c_z.expand(B, -1).reshape(B, M, K)
        return q_uv, q_z, c_uv, c_z

    def correspondence_mask(
        self, query_points: torch.Tensor, camera_params: CameraParameters, reference: bool = False
    ) -> torch.Tensor:
        """(B, N, memory_size) bool: which entries each query point may attend to (fast grid search,
        or the dense O(N M K) comparison when ``reference``). Does not count as a use."""
        pts = self._check_query_points(query_points)
        cam = self._check_camera(camera_params, pts.shape[0])
        q_uv, q_z, c_uv, c_z = self._projections(pts, cam)
        fn = correspondence_mask_reference if reference else correspondence_mask
        return fn(q_uv, q_z, c_uv, c_z, self.valid_correspondences, self.attention_window, self.depth_tolerance)

    def constrained_attention(
        self,
        query: torch.Tensor,
        query_points: torch.Tensor,
        camera_params: CameraParameters,
        use_correspondence_mask: bool = True,
        *,
        entry_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scaled dot-product attention of queries over the bank, limited by 3D correspondence.

        Args:
            query: (B, N, feature_dim) query features.
            query_points: (B, N, 3) world points of the queries.
            camera_params: the query cameras, B of them or 1 shared.
            use_correspondence_mask: False attends to every occupied entry (plain softmax).
            entry_mask: optional (memory_size,) bool: only these entries may be attended (e.g. the
                entries of a clip's selected reference views); others get zero weight.
        Returns:
            output (B, N, feature_dim) = weights @ memory_bank, and weights (B, N, memory_size);
            rows with no allowed entry and empty slots are zero. Attended entries (weight > 0)
            gain the weight as attention mass and count as used (lru).
        """
        q, pts, cam = self._check_attention_inputs(query, query_points, camera_params)
        B, N, D = q.shape
        if use_correspondence_mask:
            q_uv, q_z, c_uv, c_z = self._projections(pts, cam)
            mask = correspondence_mask(
                q_uv, q_z, c_uv, c_z, self.valid_correspondences, self.attention_window, self.depth_tolerance
            )
            row_keys = spatial_row_keys(q_uv, 2.0 * self.attention_window)
        else:
            mask = self.occupied.view(1, 1, -1).expand(B, N, -1)
            row_keys = None
        if entry_mask is not None:
            entry_mask = torch.as_tensor(entry_mask, device=mask.device)
            if entry_mask.dtype != torch.bool or entry_mask.shape != (self.memory_size,):
                raise ValueError(f"entry_mask must be a bool tensor of shape ({self.memory_size},), got "
                                 f"{entry_mask.dtype} {tuple(entry_mask.shape)}")
            mask = mask & entry_mask.view(1, 1, -1)
        output, weights = masked_attention(q, self.features, mask, 1.0 / math.sqrt(D), row_keys=row_keys)
        self._record_attention(weights)
        return output, weights

    @torch.no_grad()
    def _record_attention(self, weights: torch.Tensor) -> None:
        self.clock += 1
        mass = weights.detach().sum(dim=(0, 1))
        self.attention_mass += mass.to(self.attention_mass.dtype)
        self.last_use_step[mass > 0] = self.clock

    def constrained_attention_reference(
        self,
        query: torch.Tensor,
        query_points: torch.Tensor,
        camera_params: CameraParameters,
        use_correspondence_mask: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Slow, obvious twin of :meth:`constrained_attention` (dense N x M x K comparison, dense
        softmax). Same contract, but read-only: it does not update usage statistics. Memory grows
        as B * N * M * K: meant for tests and debugging on small inputs."""
        q, pts, cam = self._check_attention_inputs(query, query_points, camera_params)
        B, N, D = q.shape
        if use_correspondence_mask:
            q_uv, q_z, c_uv, c_z = self._projections(pts, cam)
            mask = correspondence_mask_reference(
                q_uv, q_z, c_uv, c_z, self.valid_correspondences, self.attention_window, self.depth_tolerance
            )
        else:
            mask = self.occupied.view(1, 1, -1).expand(B, N, -1)
        logits = torch.einsum("bnd,md->bnm", q, self.features) / math.sqrt(D)
        logits = logits.masked_fill(~mask, float("-inf"))
        weights = torch.nan_to_num(torch.softmax(logits, dim=-1), nan=0.0)
        return torch.einsum("bnm,md->bnd", weights, self.features), weights

    def _nearest_entries(self, points: torch.Tensor, top_k: int) -> torch.Tensor:
        """(Q, 3) points -> (Q, top_k) int64 slots ranked by distance to their nearest valid
        correspondence (ties to the lower slot), -1 past the retrievable entries.

        Exact, with pruning: each entry's valid correspondences lie in a ball (centre, radius), so
        its distance is within ``|q - centre| -+ radius``; the k-th smallest upper bound is a
        distance that the k best entries cannot exceed, and entries whose lower bound is beyond it
        (plus a rounding slack) are skipped before the exact per-correspondence distances.
        """
        Q = points.shape[0]
        K = self.num_correspondences
        idx = torch.full((Q, top_k), -1, dtype=torch.int64, device=points.device)
        valid = self.valid_correspondences
        slots = torch.where(valid.any(-1))[0]  # retrievable entries, ascending
        E = slots.numel()
        if E == 0 or Q == 0:
            return idx
        k_take = min(top_k, E)
        corr = self.correspondences[slots].to(points.dtype)  # (E, K, 3)
        ok = valid[slots]  # (E, K)
        w = ok.to(corr.dtype)
        centre = (corr * w[..., None]).sum(1) / w.sum(1, keepdim=True)  # (E, 3)
        radius = ((corr - centre[:, None]).norm(dim=-1) * w).amax(1)  # (E,)
        slack = 1e-5 * float(points.abs().max() + corr.abs().max() + 1.0)
        rows = max(1, _RETRIEVE_PAIRS_PER_CHUNK // (E * K))
        for s in range(0, Q, rows):
            q = points[s : s + rows]  # (n, 3)
            dc = torch.cdist(q, centre, compute_mode="donot_use_mm_for_euclid_dist")  # (n, E)
            kth = torch.kthvalue(dc + radius, k_take, dim=1).values  # (n,)
            ri, ei = torch.nonzero(dc - radius <= kth[:, None] + slack, as_tuple=True)
            d = (corr[ei] - q[ri, None]).norm(dim=-1).masked_fill(~ok[ei], float("inf")).amin(-1)
            dist = torch.full((q.shape[0], E), float("inf"), dtype=d.dtype, device=d.device)
            dist[ri, ei] = d
            dist, order = torch.sort(dist, dim=-1, stable=True)
            idx[s : s + rows, :k_take] = slots[order[:, :k_take]]
        return idx

    def retrieve(
        self, query_points: torch.Tensor, camera_params: CameraParameters | None = None, top_k: int = 32
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ``top_k`` entries nearest each query point in 3D.

        Entries are ranked by the distance from the query point to the entry's nearest valid
        correspondence (nearest first, ties to the lower slot). Entries without a valid
        correspondence are never retrieved. The ranking is purely 3D; ``camera_params`` (B or 1
        cameras, or None) is checked for consistency only.

        Args:
            query_points: (B, N, 3) world points.
            camera_params: the query cameras.
            top_k: entries per query.
        Returns:
            features (B, N, top_k, feature_dim) and indices (B, N, top_k) int64; positions beyond
            the number of retrievable entries hold index -1 and zero features. Retrieved entries
            count as used (lru).
        """
        pts = self._check_query_points(query_points)
        top_k = positive_int("top_k", top_k)
        if camera_params is not None:
            self._check_camera(camera_params, pts.shape[0])
        B, N = pts.shape[:2]
        idx = self._nearest_entries(pts.reshape(B * N, 3), top_k)
        idx = idx.view(B, N, top_k)
        found = idx >= 0
        feats = self.features.index_select(0, idx.clamp(min=0).reshape(-1)).view(B, N, top_k, self.feature_dim)
        if not bool(found.all()):
            feats.masked_fill_(~found.unsqueeze(-1), 0.0)
        with torch.no_grad():
            self.clock += 1
            used = idx[found].unique()
            self.last_use_step[used] = self.clock
        return feats, idx
