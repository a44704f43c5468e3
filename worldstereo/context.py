"""The generation context: what the backends see of an exploration, defined below them.

A :class:`GenerationContext` holds both memories, the stored keyframes, the previous frame, the
start view, the depth estimator and the :class:`~worldstereo.config.WorldStereoConfig`, and the
operations that feed a generated frame back into the memories (:meth:`observe`,
:meth:`commit_frame`) or take a path back (:meth:`undo`). Frame generators read it; the pipeline
drives it; :class:`~worldstereo.model.WorldStereo` composes it with the backends. Nothing here
imports a backend, the pipeline or the model.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.config import WorldStereoConfig
from worldstereo.devices import resolve_device
from worldstereo.geometry.depth import depth_to_points
from worldstereo.history import HistoryState, MemoryHistory
from worldstereo.keyframes import MemoryKeyframe
from worldstereo.memory.global_geometric import GlobalGeometricMemory
from worldstereo.memory.patch_encoder import PatchEncoder
from worldstereo.memory.spatial_stereo import SpatialStereoMemory
from worldstereo.records import FrameObservation, FrameResult
from worldstereo.snapshot_codec import quantize8

#: GGM points with a confidence below this were generated (filled), not observed; they are kept out
#: of reconstruction metrics
OBSERVED_CONFIDENCE = 0.5
#: confidence of generated points when a frame gives none
GENERATED_CONFIDENCE = 0.25


@dataclass
class ContextState:
    """Everything :meth:`GenerationContext.undo` restores (tensors cloned)."""

    ggm: dict[str, torch.Tensor]
    ssm: dict[str, torch.Tensor]
    keyframes: list[MemoryKeyframe]
    frame_counter: int
    path_counter: int
    previous: tuple[torch.Tensor, torch.Tensor, CameraParameters] | None
    paths: list[CameraParameters] = field(default_factory=list)
    ggm_evictions: int = 0
    history: HistoryState | None = None



class GenerationContext:
    """Both memories, the keyframes, the previous frame and the config of one exploration.

    Args:
        config: the configuration (memory sizes, working size, switches).

    Attributes:
        config: the :class:`WorldStereoConfig`.
        device: where the memories live (``config.device`` resolved, :mod:`worldstereo.devices`).
        ggm, ssm: the Global-Geometric and Spatial-Stereo memories (on ``device``).
        patch_encoder: the SSM's (invertible) patch encoder.
        keyframes: the stored keyframes whose tokens live in the SSM.
        start_camera, start_image: the start view's camera (B = 1) and (3, H, W) image, None before a start.
        scene_depth: median depth of the start view in scene units.
        merge_threshold: GGM merge distance in scene units.
        frame_counter, path_counter: global frame id of the next frame; paths generated so far.
        paths: the cameras of every generated path.
        previous: (image (3, H, W), depth (1, H, W), camera) of the last frame, None before a start.
        depth_estimator: the estimator the start used (generated frames may reuse it), or None.
        undo_states: undo states, newest last.
        ggm_evictions: GGM points evicted so far (point ids taken before an eviction are stale).
        history: the inspection record of every committed frame (:class:`~worldstereo.history.MemoryHistory`).
    """

    def __init__(self, config: WorldStereoConfig) -> None:
        cfg = self.config = config
        self.device = resolve_device(cfg.device)
        self.ggm = GlobalGeometricMemory(
            point_cloud_dim=cfg.point_cloud_dim,
            feature_dim=cfg.ggm_feature_dim,
            num_neighbors=cfg.num_neighbors,
            update_frequency=cfg.update_frequency,
            spatial_index=cfg.spatial_index,
            max_points=cfg.max_points,
        )
        self.ssm = SpatialStereoMemory(
            memory_size=cfg.memory_size,
            feature_dim=cfg.ssm_feature_dim,
            num_correspondences=cfg.num_correspondences,
            attention_window=cfg.attention_window,
            correspondence_threshold=cfg.correspondence_threshold,
            update_strategy=cfg.update_strategy,
        )
        self.ggm.to(self.device)
        self.ssm.to(self.device)
        self.patch_encoder = PatchEncoder(cfg.patch_size, cfg.ssm_feature_dim)
        self.keyframes: list[MemoryKeyframe] = []
        self.start_camera: CameraParameters | None = None
        self.start_image: torch.Tensor | None = None
        self.scene_depth = 1.0
        self.merge_threshold = cfg.merge_threshold or 0.01
        self.frame_counter = 0
        self.path_counter = 0
        self.paths: list[CameraParameters] = []
        self.previous: tuple[torch.Tensor, torch.Tensor, CameraParameters] | None = None
        self.depth_estimator: Any | None = None
        self.undo_states: list[ContextState] = []
        self.undo_enabled = True
        self.ggm_evictions = 0
        self.history = MemoryHistory(max(0, int(cfg.history_mb)) * 2**20)

    @property
    def started(self) -> bool:
        return self.start_camera is not None

    # ------------------------------------------------------------------ depth
    def frame_depth_estimator(self) -> Any | None:
        """A learned depth estimator for generated frames (the one the start used), or None.

        None when the start depth was given or came from the layout prior: a prior guess aligned to
        the memories is worse than continuing their surfaces.
        """
        est = self.depth_estimator
        if est is None or getattr(est, "name", "") != "moge":
            return None
        return est

    def seed(
        self, image: torch.Tensor, depth: torch.Tensor, camera: CameraParameters, filter_floaters: bool
    ) -> None:
        """Reset both memories and fill them from one view.

        Args:
            image: (1, 3, H, W) in [0, 1] at the working size; depth: (1, 1, H, W) camera z, 0 = unknown;
            camera: its camera (B = 1); filter_floaters: drop flying pixels on depth edges.
        """
        self.reset()
        image = quantize8(image)  # the start view is the first keyframe, which holds 8-bit colour
        self.start_camera, self.start_image = camera, image[0]
        valid = depth[depth > 0]
        self.scene_depth = float(valid.median())
        fx = float(camera.K[0, 0, 0])
        self.merge_threshold = self.config.merge_threshold or 1.5 * self.scene_depth / fx
        lifted = depth_to_points(depth, camera, image=image, filter_floaters=filter_floaters)
        self.ggm.initialize(lifted.points, colors=lifted.colors)
        confidence = (depth[0] > 0).float()
        if filter_floaters:
            confidence = confidence * lifted.mask[0].float()
        self.add_keyframe(image[0], depth[0], confidence, camera, path_index=-1, frame_id=0)
        self.previous = (image[0], depth[0], camera)
        self.frame_counter = 1
        self.history.begin(self.ggm, self.ssm, self.keyframes, frame_id=0, source_frames=0)

    def seed_views(
        self,
        images: torch.Tensor,
        depths: torch.Tensor,
        cameras: CameraParameters,
        start_camera: CameraParameters,
        labels: list[str],
    ) -> int:
        """Reset both memories and fill them from posed views (a pano bank, or any posed photo set).

        GGM: views of one centre partition the sphere (each direction from the view whose axis is
        nearest it, :mod:`worldstereo.panorama.lift`), so each direction is held once; views of
        several centres are lifted whole. Each view is merged into the memory in turn (points
        within the merge distance of stored ones merge). At most 90% of ``max_points`` are used (a
        grid stride thins every view alike past that). SSM: every view is a keyframe (resampled to
        the working size), frame ids ``0..N-1``, labelled. The start view is ``start_camera``,
        resampled from the views.

        Args:
            images: (N, 3, h, w) in [0, 1]; depths: (N, 1, h, w) camera z, 0 = unknown; cameras: the N
                views (size ``w x h``); start_camera: the exploration camera (working size, B = 1);
                labels: N names for attention maps.
        Returns:
            the pixel stride used for the GGM (1 = every owned pixel).
        """
        from worldstereo.inputs import resize_depth, resize_image
        from worldstereo.panorama.lift import co_centred, lift_owned_pixels, median_range, owned_pixels, resample_views

        cfg = self.config
        self.reset()
        n = images.shape[0]
        cams = cameras.to(dtype=torch.float32)
        shared = co_centred(cameras)
        owned = owned_pixels(cameras) if shared else torch.ones(n, *images.shape[-2:], dtype=torch.bool)
        points, colors, stride = lift_owned_pixels(images, depths, cams, owned, int(0.9 * cfg.max_points))
        centre = start_camera.camera_centers[0].float()
        everything = torch.cat(points)
        if everything.shape[0] == 0:
            raise ValueError("no view has a pixel with known depth")
        # the unit of presets: the median distance over the sphere (one centre), else over the points
        self.scene_depth = median_range(depths, cameras) if shared else float((everything - centre).norm(dim=-1).median())
        fx = float(start_camera.K[0, 0, 0])
        self.merge_threshold = cfg.merge_threshold or 1.5 * self.scene_depth / fx
        # each view's points in turn, merged into what the views before it left (the appended ones are its own)
        sources: list[np.ndarray] = []
        for i, (pts, cols) in enumerate(zip(points, colors, strict=True)):
            if not pts.shape[0]:
                continue
            before = self.ggm.num_points
            if self.ggm.num_points == 0:
                self.ggm.initialize(pts, colors=cols)
            else:
                self.ggm.update(pts, cams.w2c[i], colors=cols, merge_threshold=self.merge_threshold)
            sources.append(np.full(self.ggm.num_points - before, i, np.int64))
        w, h = cfg.width, cfg.height
        for i in range(n):
            img = resize_image(images[i : i + 1], w, h)[0]
            dep = resize_depth(depths[i : i + 1], w, h)[0]
            self.add_keyframe(img, dep, (dep > 0).float(), cams[i].resized(w, h), path_index=-1, frame_id=i,
                              label=labels[i])
        # the start view: the views resampled into the exploration camera (exact at one centre)
        source = cameras if shared else cameras[0:1]
        dirs = start_camera.to(dtype=torch.float64).rays().directions[0].numpy()
        hwc = images[: len(source)].permute(0, 2, 3, 1).contiguous().numpy()
        start_image = torch.from_numpy(resample_views(hwc, source, dirs)).permute(2, 0, 1).float()
        d_cam = source._camera_directions()  # (N, h, w, 3), z = 1
        ranges = (depths[: len(source), 0].double() * d_cam.norm(dim=-1)).float().numpy()
        r = torch.from_numpy(resample_views(ranges, source, dirs, nearest=True)).float()
        cos = start_camera._camera_directions()[0, ..., 2] / start_camera._camera_directions()[0].norm(dim=-1)
        start_depth = (r * cos.float()).unsqueeze(0)
        self.start_camera, self.start_image = start_camera, start_image
        self.previous = (start_image, start_depth, start_camera)
        self.frame_counter = n
        self.history.begin(self.ggm, self.ssm, self.keyframes, frame_id=n - 1,
                           source_frames=np.concatenate(sources) if sources else np.zeros(0, np.int64))
        return stride

    def reset(self) -> None:
        self.ssm.clear()
        self.keyframes = []
        self.paths = []
        self.undo_states = []
        self.frame_counter = 0
        self.path_counter = 0
        self.previous = None

    # ------------------------------------------------------------------ memory updates
    def observe(self, frame: FrameResult, camera: CameraParameters) -> FrameObservation:
        """What a generated frame tells the GGM, captured at generation time.

        New surface (``frame.new_surface_mask``, plus a filler's look-ahead ``frame.extra_points``)
        becomes new points. GGM points that won a pixel of
        the frame's GGM render outside it were seen again: a generated frame adds no information
        about them, so they are recorded as merged observations of themselves
        (:meth:`GlobalGeometricMemory.observe`: count + 1, last-seen refreshed, nothing moved).
        """
        mask = frame.new_surface_mask & (frame.depth > 0)
        pts = camera.unproject(frame.depth.unsqueeze(0))[0][mask[0]].float()
        cols = frame.image.permute(1, 2, 0)[mask[0]]
        conf = frame.confidence[0][mask[0]].float()
        if frame.extra_points is not None and frame.extra_colors is not None and frame.extra_points.shape[0]:
            pts = torch.cat([pts, frame.extra_points.float()])
            cols = torch.cat([cols, frame.extra_colors.to(cols.dtype)])
            # look-ahead points are fill too: the confidence of the frame's own filled pixels
            filled = float(conf.min()) if conf.numel() else GENERATED_CONFIDENCE
            conf = torch.cat([conf, torch.full((frame.extra_points.shape[0],), filled)])
        seen = torch.zeros(0, dtype=torch.int64)
        ids = frame.ggm_point_ids
        if ids is not None and self.config.use_ggm:
            hit = torch.bincount(ids[(ids >= 0) & ~mask[0]], minlength=self.ggm.num_points)
            seen = torch.nonzero(hit).squeeze(1)
        return FrameObservation(frame, camera, pts, cols, seen, self.ggm_evictions, conf)

    def commit_frame(self, obs: FrameObservation, keyframe: bool, path_index: int, frame_id: int) -> dict[str, int]:
        """Feed one observed frame into both memories (what the pipeline does per ``update_frequency``).

        The GGM receives the new points and the re-observed points; the SSM receives the frame's
        tokens if ``keyframe``. Returns counts: ``num_added``, ``num_merged``, ``num_evicted`` (GGM
        points) and ``ssm_added``, ``ssm_evicted`` (tokens).
        """
        stats = {"num_added": 0, "num_merged": 0, "num_evicted": 0, "ssm_added": 0, "ssm_evicted": 0}
        before = self.history.before_commit(self.ggm)
        observed = False
        if self.config.use_ggm:
            pose = obs.camera.w2c[0].float()
            # ids taken before an eviction may name other points now (per_step commits): then that
            # frame's re-observation is skipped rather than credited to the wrong points
            if obs.seen_ids.numel() and obs.evictions == self.ggm_evictions:
                stats["num_merged"] += self.ggm.observe(obs.seen_ids, pose)["num_merged"]
                observed = True
            if obs.points.shape[0] > 0:
                out = self.ggm.update(
                    obs.points, pose, colors=obs.colors, merge_threshold=self.merge_threshold, confidence=obs.confidence
                )
                stats["num_added"] += int(out["num_added"])
                stats["num_merged"] += int(out["num_merged"])
                stats["num_evicted"] += int(out["num_evicted"])
                self.ggm_evictions += int(out["num_evicted"])
        if keyframe and self.config.use_ssm:
            f = obs.frame
            added, evicted = self.add_keyframe(f.image, f.depth, f.confidence, obs.camera, path_index, frame_id)
            stats["ssm_added"], stats["ssm_evicted"] = added, evicted
        self.history.record(self.ggm, self.ssm, self.keyframes, before, obs, keyframe, path_index, frame_id, stats,
                            observed)
        return stats

    def add_keyframe(
        self,
        image: torch.Tensor,
        depth: torch.Tensor,
        confidence: torch.Tensor,
        camera: CameraParameters,
        path_index: int,
        frame_id: int,
        label: str = "",
    ) -> tuple[int, int]:
        """Store a keyframe and its tokens; returns (tokens added, occupied tokens replaced).

        A keyframe holds 8-bit colour (``image`` rounded to ``k / 255``), as the frames written to files do:
        a quarter of the bytes in a snapshot, and its tokens rebuild exactly from it.
        """
        kf = MemoryKeyframe(frame_id, path_index, quantize8(image), depth.clone(), confidence.clone(), camera, label)
        self.keyframes.append(kf)
        if not self.config.use_ssm:
            return 0, 0
        feats, corr, conf, boxes = self.keyframe_tokens(kf)
        before = int(self.ssm.occupied_mask.sum())
        self.ssm.add_to_memory(
            feats, corr, conf, metadata={"frame_index": frame_id, "camera": camera.w2c[0], "pixel_boxes": boxes}
        )
        after = int(self.ssm.occupied_mask.sum())
        # keyframes none of whose tokens survive in the SSM are dropped
        alive = set(self.ssm.entry_frames[self.ssm.occupied_mask].tolist())
        self.keyframes = [k for k in self.keyframes if k.frame_id in alive]
        return feats.shape[0], feats.shape[0] - (after - before)

    def keyframe_tokens(self, kf: MemoryKeyframe) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """SSM tokens of a keyframe.

        Returns:
            features (N, D), correspondences (N, K, 3) world points on an even grid inside each
            patch, confidence (N, K) (0 where depth is unknown), pixel boxes (N, 4) ``x0, y0, x1, y1``.
        """
        enc = self.patch_encoder
        p = enc.patch_size
        h, w = kf.image.shape[-2:]
        rows, cols = enc.grid_shape(h, w)
        feats = enc.encode(kf.image.unsqueeze(0))[0]
        side = int(round(math.sqrt(self.config.num_correspondences)))
        stride = p // side
        pts = kf.camera.unproject(kf.depth.unsqueeze(0))[0]  # (H, W, 3)
        off = stride // 2
        sub = pts[off::stride, off::stride]  # (rows*side, cols*side, 3)
        conf = (kf.confidence[0] * (kf.depth[0] > 0).float())[off::stride, off::stride]
        corr = sub.reshape(rows, side, cols, side, 3).permute(0, 2, 1, 3, 4).reshape(rows * cols, side * side, 3)
        conf = conf.reshape(rows, side, cols, side).permute(0, 2, 1, 3).reshape(rows * cols, side * side)
        r = torch.arange(rows).repeat_interleave(cols)
        c = torch.arange(cols).repeat(rows)
        boxes = torch.stack([c * p, r * p, (c + 1) * p, (r + 1) * p], dim=1)
        return feats, corr.float(), conf.float(), boxes

    def keyframe_by_id(self, frame_id: int) -> MemoryKeyframe:
        for kf in self.keyframes:
            if kf.frame_id == frame_id:
                return kf
        raise KeyError(f"no stored keyframe with frame id {frame_id}")

    def previous_frame_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (N, 3) and colours (N, 3) of the previous frame (the memory-less baseline's source)."""
        if self.previous is None:
            raise RuntimeError("call start() first")
        image, depth, camera = self.previous
        lifted = depth_to_points(depth.unsqueeze(0), camera, image=image.unsqueeze(0), filter_floaters=False)
        return lifted.points, lifted.colors

    def previous_frame_image(self) -> torch.Tensor:
        """(3, H, W) the previous frame (the input image before any was generated)."""
        if self.previous is None:
            raise RuntimeError("call start() first")
        return self.previous[0]

    def set_previous(self, image: torch.Tensor, depth: torch.Tensor, camera: CameraParameters) -> None:
        self.previous = (image, depth, camera)

    # ------------------------------------------------------------------ undo
    def snapshot_for_undo(self) -> None:
        """Keep the memories as they are for :meth:`undo` (at most ``config.max_undo``; none while
        :attr:`undo_enabled` is off: a world's trajectory, which its round restores anyway)."""
        if not self.undo_enabled or self.config.max_undo <= 0:
            return
        self.undo_states.append(self.capture())
        del self.undo_states[: -self.config.max_undo]

    def undo(self) -> bool:
        """Remove the last path's effect on both memories (and its history). Returns False if there is nothing to undo."""
        if not self.undo_states:
            return False
        self.restore(self.undo_states.pop())
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self.undo_states)

    def capture(self) -> ContextState:
        return ContextState(
            ggm=_clone_state(self.ggm.state_dict()),
            ssm=_clone_state(self.ssm.state_dict()),
            keyframes=list(self.keyframes),
            frame_counter=self.frame_counter,
            path_counter=self.path_counter,
            previous=self.previous,
            paths=list(self.paths),
            ggm_evictions=self.ggm_evictions,
            history=self.history.capture(),
        )

    def restore(self, state: ContextState) -> None:
        self.ggm.load_state_dict(state.ggm)
        self.ssm.load_state_dict(state.ssm)
        self.keyframes = list(state.keyframes)
        self.frame_counter = state.frame_counter
        self.path_counter = state.path_counter
        self.previous = state.previous
        self.paths = list(state.paths)
        self.ggm_evictions = state.ggm_evictions  # point ids of the restored GGM are valid again
        self.history.restore(state.history)


def _clone_state(state: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of a state_dict (tensors cloned, extra state copied)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in state.items()}
