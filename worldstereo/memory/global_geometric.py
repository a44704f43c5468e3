"""Global Geometric Memory (GGM): an incrementally updated, feature-carrying point cloud.

Implements ``GlobalGeometricMemory`` of API.md with the semantics of DESIGN.md ("The memories").

Per point the memory stores (in registered buffers, so ``.to(device)`` and ``state_dict`` work):
position (world), colour (RGB in [0, 1]), embedding (``point_cloud_dim``), observation count,
last-seen step and the observing camera's centre (the latest camera that saw it; used for the
view direction of attention).

Embeddings: a point's embedding is the Fourier-feature encoding of its (running-mean) position
unless explicit features were given to :meth:`initialize` / :meth:`update`. While no explicit
features exist the embeddings are not stored but computed from the positions when needed (a
pure function of the position, so nothing is lost and an update writes 12 bytes per point
instead of ``4 * point_cloud_dim``); the first explicit features materialise the embedding
buffer for every point, after which embeddings are stored and merged by running mean.

Point features are ``feature_head(embedding)``, a Linear ``point_cloud_dim -> feature_dim``.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from worldstereo.camera import CameraParameters, check_finite, check_rotation
from worldstereo.memory.encoders import FourierPointEncoder
from worldstereo.memory.ggm_device import observe_on_device, update_on_device
from worldstereo.memory.ggm_storage import PointStorage, edit_in_place, put_rows, to_numpy
from worldstereo.memory.latent_injection import INJECTION_METHODS, LatentInjectionHead
from worldstereo.memory.spatial_index import SPATIAL_INDEXES, SpatialIndex, make_spatial_index

if TYPE_CHECKING:
    from worldstereo.memory.voxel_hash import VoxelHashGrid

__all__ = ["AGGREGATIONS", "UPDATE_FREQUENCIES", "GlobalGeometricMemory"]

UPDATE_FREQUENCIES = ("per_frame", "per_step", "manual")
AGGREGATIONS = ("mean", "max", "weighted", "attention")
_UPDATE_EVENTS = {"per_frame": "frame", "per_step": "clip", "manual": None}
# Per-point state buffers: name -> (trailing shape builder, dtype). Sized to a capacity >= N.
_DEFAULT_COLOR = 0.5
_QUERY_CHUNK = 1 << 22  # bound on (queries x k x dim) elements gathered at once


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_tensor(name: str, t: Any, shape: tuple[int | None, ...]) -> torch.Tensor:
    """Validate a float tensor's shape (None = any size) and finiteness; returns it."""
    if not isinstance(t, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, t.shape, strict=True)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {t.dtype}")
    if t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64) or not np.isfinite(t.detach().numpy()).all():
        check_finite(name, t)  # (numpy is much faster than torch on a busy CPU; this raises the error)
    return t


class GlobalGeometricMemory(PointStorage, nn.Module):
    """Point-cloud memory rendered into target views as a coarse structural prior.

    Args:
        point_cloud_dim: size of the per-point embedding.
        feature_dim: size of the point features handed to the VDM (``query`` output).
        num_neighbors: neighbours gathered per query point.
        update_frequency: "per_frame", "per_step" or "manual" (see :meth:`should_update`).
        spatial_index: k-NN search for ``query``: "kd_tree", "ball_tree" or "cuda_knn".
        max_points: capacity; past it the points seen longest ago are evicted.
        seed: seed of every learnable head and of the Fourier encoder (not in API.md).
    """

    def __init__(
        self,
        point_cloud_dim: int = 256,
        feature_dim: int = 768,
        num_neighbors: int = 32,
        update_frequency: str = "per_frame",
        spatial_index: str = "kd_tree",
        max_points: int = 100000,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.point_cloud_dim = _positive_int("point_cloud_dim", point_cloud_dim)
        if point_cloud_dim % 2:
            raise ValueError(f"point_cloud_dim must be even (sin/cos pairs), got {point_cloud_dim}")
        self.feature_dim = _positive_int("feature_dim", feature_dim)
        self.num_neighbors = _positive_int("num_neighbors", num_neighbors)
        self.max_points = _positive_int("max_points", max_points)
        if update_frequency not in UPDATE_FREQUENCIES:
            raise ValueError(f"update_frequency must be one of {UPDATE_FREQUENCIES}, got {update_frequency!r}")
        if spatial_index not in SPATIAL_INDEXES:
            raise ValueError(f"spatial_index must be one of {SPATIAL_INDEXES}, got {spatial_index!r}")
        self.update_frequency = update_frequency
        self.spatial_index = spatial_index
        self.seed = int(seed)
        make_spatial_index(spatial_index)  # fail now (e.g. cuda_knn without CUDA), not on first query

        self.encoder = FourierPointEncoder(point_cloud_dim, seed=seed)
        gen = torch.Generator().manual_seed(seed)
        self.feature_head = nn.Linear(point_cloud_dim, feature_dim)
        attn_dim = 64
        self.attn_query = nn.Linear(point_cloud_dim + 3, attn_dim)
        self.attn_key = nn.Linear(point_cloud_dim + 3, attn_dim)
        for lin in (self.feature_head, self.attn_query, self.attn_key):
            bound = 1.0 / math.sqrt(lin.in_features)
            with torch.no_grad():
                lin.weight.copy_(torch.empty(lin.weight.shape).uniform_(-bound, bound, generator=gen))
                lin.bias.copy_(torch.empty(lin.bias.shape).uniform_(-bound, bound, generator=gen))
        self.latent_heads = nn.ModuleDict()  # "c<C>" -> LatentInjectionHead, created per channel count

        self._n = 0
        self.register_buffer("_pos", torch.zeros(0, 3))
        self.register_buffer("_rgb", torch.zeros(0, 3))
        self.register_buffer("_observer", torch.zeros(0, 3))
        self.register_buffer("_count", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("_last_seen", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("_conf", torch.zeros(0))
        self.register_buffer("_embedding", torch.zeros(0, point_cloud_dim))
        self.register_buffer("_step", torch.zeros((), dtype=torch.int64))
        self.register_buffer("_explicit_embedding", torch.zeros((), dtype=torch.bool))
        self._grid: VoxelHashGrid | None = None
        self.last_kept: torch.Tensor | None = None
        """After an update or initialize that evicted: (N_before,) bool, the rows kept (in their order before); else None."""
        self._version = 0
        self._knn: tuple[int, torch.device, SpatialIndex] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def num_points(self) -> int:
        """Current number of points N."""
        return self._n

    @property
    def point_cloud(self) -> torch.Tensor:
        """(N, 3) world positions (running means of the merged observations)."""
        return self._pos[: self._n]

    @property
    def point_colors(self) -> torch.Tensor:
        """(N, 3) RGB colours in [0, 1] (running means; 0.5 grey where never given)."""
        return self._rgb[: self._n]

    @property
    def observation_counts(self) -> torch.Tensor:
        """(N,) int64 number of observations merged into each point."""
        return self._count[: self._n]

    @property
    def last_seen(self) -> torch.Tensor:
        """(N,) int64 update step at which each point was last observed (0 = initialize)."""
        return self._last_seen[: self._n]

    @property
    def point_confidence(self) -> torch.Tensor:
        """(N,) float in [0, 1]: 1 for observed points, lower for generated ones (e.g. inpainted surface).

        A merge keeps the higher of the two: a point once observed stays observed.
        """
        return self._conf[: self._n]

    @property
    def observer_centers(self) -> torch.Tensor:
        """(N, 3) world centre of the latest camera that observed each point."""
        return self._observer[: self._n]

    @property
    def step(self) -> int:
        """Number of updates since the last :meth:`initialize`."""
        return int(self._step)

    @property
    def point_embeddings(self) -> torch.Tensor:
        """(N, point_cloud_dim) embeddings (stored, or encoded from the positions; see module doc)."""
        if bool(self._explicit_embedding):
            return self._embedding[: self._n]
        return self.encoder(self.point_cloud)

    @property
    def point_features(self) -> torch.Tensor:
        """(N, feature_dim) point features ``feature_head(embedding)``."""
        return self.feature_head(self.point_embeddings)

    # ------------------------------------------------------------------ update policy
    def should_update(self, event: str) -> bool:
        """Whether the pipeline should call :meth:`update` after ``event``.

        Args:
            event: "frame" (a frame was generated) or "clip" (a clip was finished).
        Returns:
            True for "frame" under "per_frame", for "clip" under "per_step"; never under "manual".
        """
        if event not in ("frame", "clip"):
            raise ValueError(f"event must be 'frame' or 'clip', got {event!r}")
        return _UPDATE_EVENTS[self.update_frequency] == event

    # ------------------------------------------------------------------ initialize / update
    def initialize(
        self,
        point_cloud: torch.Tensor,
        features: torch.Tensor | None = None,
        colors: torch.Tensor | None = None,
        confidence: torch.Tensor | None = None,
    ) -> None:
        """Reset the memory to ``point_cloud``.

        Args:
            point_cloud: (N, 3) world points.
            features: optional (N, point_cloud_dim) embeddings; else encoded from coordinates.
            colors: optional (N, 3) RGB in [0, 1]; else 0.5 grey.
            confidence: optional (N,) in [0, 1] (not in API.md); else 1 (observed).

        All points get observation count 1, last-seen step 0 and an unknown observer (their own
        position). Past ``max_points`` an evenly spaced subset of ``max_points`` is kept.
        """
        pts = _check_tensor("point_cloud", point_cloud, (None, 3))
        self.last_kept = None
        n = pts.shape[0]
        if features is not None:
            _check_tensor("features", features, (n, self.point_cloud_dim))
        if colors is not None:
            _check_tensor("colors", colors, (n, 3))
        if confidence is not None:
            _check_tensor("confidence", confidence, (n,))
        dev = self._pos.device
        self._step.zero_()
        self._explicit_embedding.fill_(features is not None)
        self._n = 0
        if features is None:
            self._embedding = self._embedding.new_zeros(0, self.point_cloud_dim)
        self._reserve(n)
        self._n = n
        self._pos[:n] = pts.to(dev)
        self._rgb[:n] = colors.to(dev) if colors is not None else _DEFAULT_COLOR
        self._observer[:n] = pts.to(dev)
        self._count[:n] = 1
        self._last_seen[:n] = 0
        self._conf[:n] = confidence.to(dev).clamp(0, 1) if confidence is not None else 1.0
        if features is not None:
            self._embedding[:n] = features.to(dev)
        self._grid = None
        self._evict_past_capacity()
        self._changed()

    def update(
        self,
        new_points: torch.Tensor,
        camera_pose: torch.Tensor,
        new_features: torch.Tensor | None = None,
        merge_threshold: float = 0.01,
        colors: torch.Tensor | None = None,
        confidence: torch.Tensor | None = None,
    ) -> dict[str, Any]:
        """Merge new observations into the memory.

        A new point whose nearest stored point (as stored before this call) lies within
        ``merge_threshold`` merges into it: running mean of position, colour and (stored)
        embedding, observation count + 1, last-seen step and observer set to this update. The
        other new points are appended (new points never merge with each other). Past
        ``max_points``, the points with the smallest last-seen step are evicted (ties: evenly
        spaced among the oldest step).

        Args:
            new_points: (M, 3) world points.
            camera_pose: (4, 4) world-to-camera pose of the observer (OpenCV axes).
            new_features: optional (M, point_cloud_dim) embeddings.
            merge_threshold: merge distance in scene units (> 0).
            colors: optional (M, 3) RGB in [0, 1] (not in API.md); merged points keep their
                colour when omitted, appended ones get 0.5 grey.
            confidence: optional (M,) in [0, 1] (not in API.md): 1 = observed, lower = generated;
                default 1. A merged point keeps the higher of its own and its observations'.
        Returns:
            dict with ``num_added``, ``num_merged``, ``total_points`` and ``num_evicted``.
        """
        pts = _check_tensor("new_points", new_points, (None, 3))
        m = pts.shape[0]
        pose = _check_tensor("camera_pose", camera_pose, (4, 4))
        check_rotation("camera_pose", pose[:3, :3])
        if new_features is not None:
            _check_tensor("new_features", new_features, (m, self.point_cloud_dim))
        if colors is not None:
            _check_tensor("colors", colors, (m, 3))
        if confidence is not None:
            _check_tensor("confidence", confidence, (m,))
        if isinstance(merge_threshold, bool) or not isinstance(merge_threshold, (int, float)) or not (
            math.isfinite(merge_threshold) and merge_threshold > 0
        ):
            raise ValueError(f"merge_threshold must be a positive finite number, got {merge_threshold!r}")
        merge_threshold = float(merge_threshold)
        self.last_kept = None
        dev = self._pos.device
        pose = pose.detach().to("cpu", torch.float64)
        center = (-(pose[:3, :3].T @ pose[:3, 3])).to(torch.float32).numpy()
        self._step += 1
        step = int(self._step)
        if new_features is not None and not bool(self._explicit_embedding):
            self._materialize_embeddings()
        if not edit_in_place(self._pos):  # a device's buffers: merged there, in torch
            feats_t = None
            if bool(self._explicit_embedding):
                feats_t = new_features if new_features is not None else self.encoder(pts.detach().to(dev, torch.float32))
            num_added, num_merged = update_on_device(
                self, pts, torch.from_numpy(center), step, merge_threshold, colors, feats_t, confidence, _DEFAULT_COLOR)
            num_evicted = self._evict_past_capacity()
            self._changed()
            return {"num_added": num_added, "num_merged": num_merged, "total_points": self._n, "num_evicted": num_evicted}
        # index maths and running means in numpy on the CPU (numpy views of CPU buffers)
        pts_np = to_numpy(pts)
        feats = None
        if bool(self._explicit_embedding):
            feats = to_numpy(new_features) if new_features is not None else to_numpy(self.encoder(pts.detach().to(dev, torch.float32)))
        rgb = to_numpy(colors) if colors is not None else None
        conf = np.clip(to_numpy(confidence), 0.0, 1.0) if confidence is not None else np.ones(m, np.float32)

        # -- merge lookup (voxel hash over the stored points, no tree rebuild)
        if self._n and m:
            grid = self._merge_grid(merge_threshold)
            order = grid.brick_order(pts_np)  # lookups and merges grouped by brick: neighbours in cache
            target, _ = grid.nearest_within(pts_np, merge_threshold, order=order)
        else:
            grid, target, order = self._grid, np.full(m, -1, np.int64), np.arange(m)
        src_added = np.flatnonzero(target < 0)
        num_added = src_added.shape[0]
        num_merged = m - num_added
        moved_idx = moved_pos = None
        if num_merged:
            moved_idx, moved_pos = self._merge_into(target, order, pts_np, rgb, feats, conf, step, center)

        # -- append the rest
        new_pos = None
        if num_added:
            n0 = self._n
            self._reserve(n0 + num_added)
            n1 = n0 + num_added

            def rows(a: np.ndarray) -> np.ndarray:
                return np.take(a, src_added, axis=0) if num_merged else a

            new_pos = rows(pts_np)
            put_rows(self._pos, slice(n0, n1), new_pos)
            put_rows(self._rgb, slice(n0, n1), rows(rgb) if rgb is not None else _DEFAULT_COLOR)
            put_rows(self._observer, slice(n0, n1), center)
            put_rows(self._count, slice(n0, n1), 1)
            put_rows(self._conf, slice(n0, n1), rows(conf))
            put_rows(self._last_seen, slice(n0, n1), step)
            if feats is not None:
                put_rows(self._embedding, slice(n0, n1), rows(feats))
            self._n = n1
        if grid is not None:
            grid.update(moved_idx, moved_pos, new_pos)
        num_evicted = self._evict_past_capacity()
        self._changed()
        return {
            "num_added": num_added,
            "num_merged": num_merged,
            "total_points": self._n,
            "num_evicted": num_evicted,
        }

    def observe(self, indices: torch.Tensor, camera_pose: torch.Tensor) -> dict[str, Any]:
        """Record that stored points were seen again, without new geometry.

        The fast path of :meth:`update` for observations that coincide with stored points (a
        renderer's winning point ids): each distinct index gets observation count + 1 and its
        last-seen step and observer set to this call, as a merge would; position, colour and
        embedding stay exactly as they are (the observation adds nothing new to them). It counts
        as one update step.

        Args:
            indices: (K,) int64 indices into the stored points (duplicates count once).
            camera_pose: (4, 4) world-to-camera pose of the observer.
        Returns:
            dict with ``num_added`` (0), ``num_merged`` (distinct indices), ``total_points`` and
            ``num_evicted`` (0).
        """
        idx = torch.as_tensor(indices)
        if idx.ndim != 1 or idx.dtype not in (torch.int64, torch.int32):
            raise ValueError(f"indices must be a 1-D integer tensor, got {idx.dtype} {tuple(idx.shape)}")
        pose = _check_tensor("camera_pose", camera_pose, (4, 4))
        check_rotation("camera_pose", pose[:3, :3])
        if idx.numel():
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self._n:
                raise ValueError(f"indices must lie in [0, {self._n}), got {lo}..{hi}")
        pose = pose.detach().to("cpu", torch.float64)
        center = (-(pose[:3, :3].T @ pose[:3, 3])).to(torch.float32).numpy()
        self._step += 1
        step = int(self._step)
        if not edit_in_place(self._count):  # a device's buffers: updated there
            distinct = observe_on_device(self, idx, torch.from_numpy(center), step)
            return {"num_added": 0, "num_merged": distinct, "total_points": self._n, "num_evicted": 0}
        ids = np.ascontiguousarray(idx.detach().cpu().numpy(), dtype=np.int64)
        # one compiled pass, no sort (np.unique took 60 ms a frame at 512x384)
        from worldstereo.memory.merge_kernels import observe_rows  # numba: imported when first needed

        distinct = observe_rows(ids, self._count.numpy(), self._last_seen.numpy(), self._observer.numpy(), step, center)
        return {"num_added": 0, "num_merged": int(distinct), "total_points": self._n, "num_evicted": 0}

    # ------------------------------------------------------------------ query
    def query(
        self,
        query_points: torch.Tensor,
        camera_params: CameraParameters,
        aggregation: str = "mean",
    ) -> torch.Tensor:
        """Aggregate the features of the ``num_neighbors`` nearest memory points.

        Args:
            query_points: (B, Q, 3) world points.
            camera_params: 1 or B cameras; their centres give the query view directions
                ("attention"); validated for every aggregation.
            aggregation: "mean"; "max" (channel-wise over neighbours); "weighted" (inverse
                distance, ``1 / (d + 1e-6)`` normalised); "attention" (softmax over neighbours of
                ``<q, k> / sqrt(64)`` with ``q = attn_query([enc(query), view dir from camera])``,
                ``k = attn_key([embedding, view dir from its observer])``).
        Returns:
            (B, Q, feature_dim). With fewer than ``num_neighbors`` points all of them are used;
            an empty memory gives zeros.
        """
        q = _check_tensor("query_points", query_points, (None, None, 3))
        if not isinstance(camera_params, CameraParameters):
            raise ValueError(f"camera_params must be CameraParameters, got {type(camera_params).__name__}")
        b, nq = q.shape[:2]
        if len(camera_params) not in (1, b):
            raise ValueError(f"camera_params must hold 1 or B={b} cameras, got {len(camera_params)}")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        dev = self._pos.device
        if self._n == 0 or b * nq == 0:
            return torch.zeros(b, nq, self.feature_dim, device=dev)
        flat = q.reshape(-1, 3).to(dev, torch.float32)
        nb = self._knn_index().query(flat, self.num_neighbors)
        idx, dist = nb.indices.to(dev), nb.distances.to(dev)
        k = idx.shape[1]
        emb = self.point_embeddings
        if aggregation == "max":
            table = self.feature_head(emb)
        else:
            table = emb
        if aggregation == "attention":
            keys = self.attn_key(torch.cat([emb, _unit(self.point_cloud - self.observer_centers)], dim=1))
            centers = camera_params.camera_centers.to(dev, torch.float32)  # (1 or B, 3)
            centers = centers.expand(b, 3).repeat_interleave(nq, dim=0)
            qvec = self.attn_query(torch.cat([self.encoder(flat), _unit(flat - centers)], dim=1))
        if aggregation == "max":
            chunk = max(1, _QUERY_CHUNK // (k * table.shape[1]))
            out = torch.cat([table[idx[s : s + chunk]].amax(dim=1) for s in range(0, idx.shape[0], chunk)])
            return out.view(b, nq, self.feature_dim)
        if aggregation == "mean":
            w = torch.full(idx.shape, 1.0 / k, device=dev)
        elif aggregation == "weighted":
            w = 1.0 / (dist + 1e-6)
            w = w / w.sum(dim=1, keepdim=True)
        else:
            chunk = max(1, _QUERY_CHUNK // (k * keys.shape[1]))
            w = torch.cat([
                torch.softmax(
                    torch.einsum("qd,qkd->qk", qvec[s : s + chunk], keys[idx[s : s + chunk]])
                    / math.sqrt(keys.shape[1]),
                    dim=1,
                )
                for s in range(0, idx.shape[0], chunk)
            ])
        # weights sum to 1, so aggregating embeddings then projecting equals aggregating features
        return self.feature_head(_weighted_rows(w, idx, table)).view(b, nq, self.feature_dim)

    # ------------------------------------------------------------------ injection
    def inject_to_latent(
        self,
        latent: torch.Tensor,
        camera_params: CameraParameters,
        injection_method: str = "cross_attention",
    ) -> torch.Tensor:
        """Render the point features into each latent frame's camera and combine with the latent.

        Args:
            latent: (B, T, C, H, W).
            camera_params: B*T cameras (frame ``b * T + t``), T cameras shared across B, or 1;
                at any image size (rescaled to the latent's W x H).
            injection_method: "addition" (latent + rendered where covered), "concatenation"
                (1x1 mix of [latent, rendered, coverage] where covered) or "cross_attention"
                (each token attends to the covered pixels of its 3x3 rendered neighbourhood;
                residual add). Rendering is a z-buffer splat at latent resolution of the point
                features projected to C channels (``latent_heads["c<C>"].to_latent``).
        Returns:
            (B, T, C, H, W); equal to ``latent`` where the memory is not visible.
        """
        from worldstereo.geometry.splat import splat_points

        lat = _check_tensor("latent", latent, (None, None, None, None, None))
        if not isinstance(camera_params, CameraParameters):
            raise ValueError(f"camera_params must be CameraParameters, got {type(camera_params).__name__}")
        if injection_method not in INJECTION_METHODS:
            raise ValueError(f"injection_method must be one of {INJECTION_METHODS}, got {injection_method!r}")
        b, t, c, h, w = lat.shape
        ncam = len(camera_params)
        if ncam == b * t:
            cams = camera_params
        elif ncam == t:
            cams = camera_params[torch.arange(t).repeat(b)]
        elif ncam == 1:
            cams = camera_params[[0] * (b * t)]
        else:
            raise ValueError(f"camera_params must hold B*T={b * t}, T={t} or 1 cameras, got {ncam}")
        if self._n == 0:
            return lat.clone()
        head = self._latent_head(c).to(lat.device)
        # point -> C values: compose the two linear maps (N x Dp x C instead of N x Dp x feature_dim)
        weight = head.to_latent.weight @ self.feature_head.weight  # (C, Dp)
        bias = head.to_latent.weight @ self.feature_head.bias + head.to_latent.bias
        values = self.point_embeddings @ weight.T + bias
        cams = cams.resized(w, h).to(self._pos.device, torch.float32)
        render = splat_points(self.point_cloud, values, cams)
        rendered = render.image.to(lat.device, lat.dtype)
        covered = (~render.hole_mask).to(lat.device)
        out = head.combine(lat.reshape(b * t, c, h, w), rendered, covered, injection_method)
        return out.view(b, t, c, h, w)

    # ------------------------------------------------------------------ internals
    def _changed(self) -> None:
        self._version += 1
        self._knn = None

    def _latent_head(self, channels: int) -> LatentInjectionHead:
        key = f"c{channels}"
        if key not in self.latent_heads:
            head = LatentInjectionHead(self.feature_dim, channels, seed=self.seed)
            self.latent_heads[key] = head.to(self._pos.device)
        return self.latent_heads[key]

    def _knn_index(self) -> SpatialIndex:
        dev = self._pos.device
        if self._knn is None or self._knn[0] != self._version or self._knn[1] != dev:
            index = make_spatial_index(self.spatial_index, dev).build(self.point_cloud.detach())
            self._knn = (self._version, dev, index)
        return self._knn[2]

def compile_merge_kernels() -> None:
    """Compile (or load from numba's cache) every kernel of the merge path, on a tiny memory.

    The first process after an install compiles them (about 6 s on 2 cores), later ones load them
    (about 0.4 s); entry points call this in the background (``worldstereo.runtime.warm_up``) so the
    first update does not wait.
    """
    rng = np.random.default_rng(0)
    mem = GlobalGeometricMemory(point_cloud_dim=2, feature_dim=2, max_points=6000)
    mem.initialize(torch.from_numpy(rng.random((200, 3), dtype=np.float32)))
    near = mem.point_cloud[rng.integers(0, 200, 100)] + 0.001
    far = torch.from_numpy(rng.random((6000, 3), dtype=np.float32) * 20)  # > 4096 new points, past capacity
    mem.update(torch.cat([near, far]), torch.eye(4), merge_threshold=0.01)
    mem.observe(torch.arange(mem.num_points), torch.eye(4))


def _weighted_rows(weights: torch.Tensor, index: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``out[q] = sum_j weights[q, j] * table[index[q, j]]``: (Q, k), (Q, k), (N, D) -> (Q, D).

    One sparse (Q x N) CSR product on the CPU (faster than gathering (Q, k, D)); a chunked gather
    elsewhere or when gradients are needed.
    """
    q, k = index.shape
    if table.device.type == "cpu" and not (torch.is_grad_enabled() and (table.requires_grad or weights.requires_grad)):
        crow = torch.arange(0, q * k + 1, k, device=table.device)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "sparse CSR support is in beta"
            a = torch.sparse_csr_tensor(
                crow, index.reshape(-1), weights.reshape(-1).to(table.dtype), size=(q, table.shape[0]),
                check_invariants=False,
            )
            return a @ table
    chunk = max(1, _QUERY_CHUNK // (k * table.shape[1]))
    return torch.cat([
        torch.einsum("qk,qkd->qd", weights[s : s + chunk], table[index[s : s + chunk]]) for s in range(0, q, chunk)
    ])


def _unit(v: torch.Tensor) -> torch.Tensor:
    """Rows of ``v`` scaled to unit length (zero rows stay zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
