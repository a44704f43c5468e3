"""The ``WorldStereo`` model: both memories, a depth estimator and a frame generator, one config.

Usage::

    model = WorldStereo(WorldStereoConfig())
    model.start(image)                        # (H, W, 3) uint8 or (1, 3, H, W) float in [0, 1]
    for step in model.generate("eloop", num_frames=21):
        ...                                   # a Step per frame (worldstereo.pipeline.Step)
    model.undo()                              # drop the last path's effect on both memories
    model.save("snapshot/"); WorldStereo.load("snapshot/")
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file

from worldstereo.atomic import atomic_path, write_text_atomic
from worldstereo.backends.generators import FRAME_GENERATORS, FrameGenerator, FrameResult
from worldstereo.camera import CameraParameters, check_finite
from worldstereo.geometry.depth import depth_to_points
from worldstereo.keyframes import MemoryKeyframe
from worldstereo.memory.global_geometric import GlobalGeometricMemory
from worldstereo.memory.patch_encoder import PatchEncoder
from worldstereo.memory.spatial_stereo import SpatialStereoMemory

SNAPSHOT_VERSION = 1
#: GGM points with a confidence below this were generated (filled), not observed; they are kept out
#: of reconstruction metrics
OBSERVED_CONFIDENCE = 0.5
#: confidence of generated points when a frame gives none
GENERATED_CONFIDENCE = 0.25
UPDATE_FREQUENCIES = ("per_frame", "per_step", "manual")
GENERATOR_CHOICES = ("auto", "warp", "vace", "oracle")


@dataclass
class WorldStereoConfig:
    """Everything that configures a :class:`WorldStereo` model."""

    width: int = 512
    """Working image width in pixels (a multiple of ``patch_size``)."""
    height: int = 384
    """Working image height in pixels (a multiple of ``patch_size``)."""
    depth_backend: str = "auto"
    """Depth estimator for ``start()`` without a depth map: ``moge``, ``prior``, or ``auto`` (MoGe-2 when
    it can be had: cached, or downloaded from the Hugging Face Hub; else the offline prior, with the reason)."""
    depth_model: str | None = None
    """MoGe-2 weights: a Hub repo id, a checkpoint file or a folder; None = ``WORLDSTEREO_MOGE_WEIGHTS``,
    else the variant for the depth device (``Ruicheng/moge-2-vits-normal`` on a CPU, ``-vitl-normal`` on CUDA)."""
    depth_device: str | None = None
    """Torch device of the depth model; None = CUDA where present, else the CPU."""
    generator: str = "auto"
    """Frame generator: ``warp`` (training-free, CPU), ``vace`` (Wan2.1-VACE through diffusers, CUDA GPU),
    ``oracle`` (ground truth of ``scene``), or ``auto`` (``vace`` where CUDA and its weights can be had,
    else ``warp``, with the reason in ``generator_message``)."""
    prompt: str = ""
    """Text prompt of the ``vace`` generator (the example's ``prompt.json`` caption, or the user's)."""
    vace_steps: int = 30
    """Denoising steps per ``vace`` clip."""
    vace_offload: bool = False
    """Model CPU offload for ``vace`` on small GPUs."""
    fill: str = "auto"
    """What fills the holes no memory covers in ``warp`` frames: ``lama`` (LaMa through ONNX Runtime,
    weights from the Hugging Face Hub), ``telea`` (OpenCV), ``none`` (left black, no depth), or ``auto``
    (LaMa when its weights can be had, else Telea)."""
    scene: str | None = None
    """Procedural scene name for the ``oracle`` generator."""
    scene_seed: int = 0
    """Seed of the procedural scene."""
    use_ggm: bool = True
    """Use the Global-Geometric Memory (off: frames are warped from the previous frame only)."""
    use_ssm: bool = True
    """Use the Spatial-Stereo Memory."""
    fov_y_deg: float = 60.0
    """Vertical field of view of the default camera (when neither a camera nor estimated intrinsics exist)."""
    point_cloud_dim: int = 32
    """GGM point embedding size (the API default 256 is not needed by the warp generator)."""
    ggm_feature_dim: int = 64
    """GGM output feature size."""
    num_neighbors: int = 8
    """GGM neighbours per query."""
    max_points: int = 1_000_000
    """GGM capacity; past it the points seen longest ago are evicted."""
    spatial_index: str = "kd_tree"
    """GGM neighbour search: ``kd_tree``, ``ball_tree`` or ``cuda_knn``."""
    update_frequency: str = "per_frame"
    """When generated frames enter the memories: ``per_frame``, ``per_step`` (after each path) or ``manual``."""
    merge_threshold: float | None = None
    """GGM merge distance in scene units; None = 1.5 pixel footprints at the start view's median depth."""
    filter_floaters: bool | None = None
    """Drop flying pixels on depth edges when lifting the start depth to points; None = only for depth
    estimated by a model (a given depth map is trusted as it is; the layout prior has no edges)."""
    splat_radius: int = 0
    """GGM render footprint radius in pixels."""
    patch_size: int = 16
    """SSM token size in pixels; ``3 * patch_size^2 <= ssm_feature_dim``."""
    ssm_feature_dim: int = 768
    """SSM feature size (the API default)."""
    memory_size: int = 24576
    """SSM capacity in tokens (24576 = 32 keyframes of 768 tokens at 512x384)."""
    num_correspondences: int = 64
    """3D correspondences per SSM token (an 8x8 grid inside the patch)."""
    attention_window: int = 7
    """SSM constrained-attention window in pixels."""
    correspondence_threshold: float = 0.5
    """SSM correspondences below this confidence are ignored (inpainted pixels have 0.25)."""
    update_strategy: str = "importance_based"
    """SSM replacement when full: ``fifo``, ``lru`` or ``importance_based`` (the default here: it keeps
    the input image, whose confidence is highest, longest)."""
    keyframes_per_clip: int = 8
    """Frames of each path stored in the SSM (8 of 21 in the reference method)."""
    max_reference_views: int = 8
    """Stored views a path may draw on (reference-view selection)."""
    max_undo: int = 8
    """How many paths ``undo()`` can take back."""

    def __post_init__(self) -> None:
        from worldstereo.backends.fill import FILL_CHOICES

        if self.generator not in GENERATOR_CHOICES:
            raise ValueError(f"generator must be one of {GENERATOR_CHOICES}, got {self.generator!r}")
        if self.fill not in FILL_CHOICES:
            raise ValueError(f"fill must be one of {FILL_CHOICES}, got {self.fill!r}")
        if self.update_frequency not in UPDATE_FREQUENCIES:
            raise ValueError(f"update_frequency must be one of {UPDATE_FREQUENCIES}, got {self.update_frequency!r}")
        for name in ("width", "height", "patch_size", "memory_size", "num_correspondences", "keyframes_per_clip"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.width % self.patch_size or self.height % self.patch_size:
            raise ValueError(f"width and height ({self.width}x{self.height}) must be multiples of patch_size {self.patch_size}")
        side = int(round(math.sqrt(self.num_correspondences)))
        if side * side != self.num_correspondences or self.patch_size % side:
            raise ValueError(
                f"num_correspondences ({self.num_correspondences}) must be a square whose side divides patch_size ({self.patch_size})"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WorldStereoConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown config keys: {sorted(unknown)}")
        return cls(**data)


@dataclass
class StartInfo:
    """What ``start()`` did: which depth was used, whether the geometry is approximate, and its scale.

    Attributes:
        depth_source: ``given`` (the caller's depth) or the depth backend's name (``moge``, ``prior``).
        approximate: the geometry is a guess (the layout prior).
        message: one line about the depth (which model, or why the prior stands in and how to fix it).
        scene_depth: median depth of the start view after scaling, in scene units.
        num_points: GGM points after the start.
        depth_model: what produced the depth: a MoGe-2 repo id or file, ``prior``, or ``given``.
        scale_factor: factor the depth was multiplied by to match the camera path's scale (1.0 = unchanged).
        scale_message: one line about the scale alignment ("" when none was attempted).
        fallback_reason: why MoGe-2 was not used under ``auto`` (``offline``, ``download_failed``,
            ``corrupt``, ``not_found``, ``package_missing``), else None.
    """

    depth_source: str
    approximate: bool
    message: str
    scene_depth: float
    num_points: int
    depth_model: str = "given"
    scale_factor: float = 1.0
    scale_message: str = ""
    fallback_reason: str | None = None


@dataclass
class FrameObservation:
    """A generated frame and the GGM points it yields (see :meth:`WorldStereo.observe`).

    Attributes:
        frame: the generator's output.
        camera: its camera (B = 1).
        points: (P, 3) world points of new surface.
        colors: (P, 3) their colours in [0, 1].
        confidence: (P,) their confidence (the frame's: 1 observed, lower generated, e.g. inpainted).
        seen_ids: (S,) int64 indices of GGM points seen again.
        evictions: the model's GGM eviction count when ``seen_ids`` were taken (ids are valid
            only while no point has been evicted since).
    """

    frame: FrameResult
    camera: CameraParameters
    points: torch.Tensor
    colors: torch.Tensor
    seen_ids: torch.Tensor
    evictions: int
    confidence: torch.Tensor | None = None


@dataclass
class _State:
    """Everything ``undo()`` restores (tensors cloned)."""

    ggm: dict[str, torch.Tensor]
    ssm: dict[str, torch.Tensor]
    keyframes: list[MemoryKeyframe]
    frame_counter: int
    path_counter: int
    previous: tuple[torch.Tensor, torch.Tensor, CameraParameters] | None
    paths: list[CameraParameters] = field(default_factory=list)


class WorldStereo:
    """Both memories + a depth estimator + a frame generator (see the module docstring).

    Args:
        config: the configuration; defaults to :class:`WorldStereoConfig`.
        depth_estimator: optional ready estimator (overrides ``config.depth_backend``).
        generator: optional ready frame generator (overrides ``config.generator``).
    """

    def __init__(
        self,
        config: WorldStereoConfig | None = None,
        depth_estimator: Any | None = None,
        generator: FrameGenerator | None = None,
    ) -> None:
        self.config = config or WorldStereoConfig()
        cfg = self.config
        self._depth_estimator = depth_estimator
        #: which generator runs, and why (a fallback's reason)
        self.generator_message = ""
        #: why ``vace`` did not run (a ``WeightsUnavailableError.reason``), None when nothing fell back
        self.generator_fallback: str | None = None
        self.generator = generator or self._make_generator()
        if generator is not None:
            self.generator_message = getattr(generator, "message", "") or generator.name
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
        self.patch_encoder = PatchEncoder(cfg.patch_size, cfg.ssm_feature_dim)
        self.keyframes: list[MemoryKeyframe] = []
        self.start_camera: CameraParameters | None = None
        self.start_image: torch.Tensor | None = None
        self.start_info: StartInfo | None = None
        self.scene_depth = 1.0
        self.merge_threshold = cfg.merge_threshold or 0.01
        self.frame_counter = 0
        self.path_counter = 0
        self.paths: list[CameraParameters] = []
        self._previous: tuple[torch.Tensor, torch.Tensor, CameraParameters] | None = None
        self._history: list[_State] = []
        self._ggm_evictions = 0

    # ------------------------------------------------------------------ backends
    def _make_generator(self) -> FrameGenerator:
        """The configured generator; ``auto`` and an unavailable ``vace`` fall back to ``warp`` (reason in ``generator_message``)."""
        cfg = self.config
        if cfg.generator == "oracle":
            from worldstereo.scenes import get_scene

            if cfg.scene is None:
                raise ValueError("generator 'oracle' needs config.scene (a procedural scene name)")
            return FRAME_GENERATORS.create("oracle", scene=get_scene(cfg.scene, seed=cfg.scene_seed))
        if cfg.generator == "vace" or (cfg.generator == "auto" and torch.cuda.is_available()):
            from worldstereo.backends.vace import VaceGenerator
            from worldstereo.hub import WeightsUnavailableError

            try:
                gen = VaceGenerator(prompt=cfg.prompt, num_inference_steps=cfg.vace_steps, offload=cfg.vace_offload)
                self.generator_message = gen.message
                return gen
            except WeightsUnavailableError as err:
                self.generator_message = f"warp (vace unavailable: {err})"
                self.generator_fallback = err.reason
        warp = self._make_warp()
        if not self.generator_message:
            self.generator_message = "warp (training-free)" + (
                "" if cfg.generator == "warp" else "; vace needs a CUDA GPU, none found"
            )
        return warp

    def _make_warp(self) -> FrameGenerator:
        from worldstereo.backends.fill import make_filler

        return FRAME_GENERATORS.create("warp", splat_radius=self.config.splat_radius, filler=make_filler(self.config.fill))

    def frame_depth_estimator(self) -> Any | None:
        """A learned depth estimator for generated frames (the one ``start`` used), or None.

        None when the start depth was given or came from the layout prior: a prior guess aligned to
        the memories is worse than continuing their surfaces.
        """
        est = self._depth_estimator
        if est is None or getattr(est, "name", "") != "moge":
            return None
        return est

    @property
    def started(self) -> bool:
        return self.start_camera is not None

    # ------------------------------------------------------------------ start
    def start(
        self,
        image: Any,
        depth: Any | None = None,
        camera: CameraParameters | None = None,
        *,
        align_to: CameraParameters | None = None,
        align_scale: bool | None = None,
    ) -> StartInfo:
        """Reset both memories and seed them with one image.

        Args:
            image: (H, W, 3) uint8 array/tensor, or (1, 3, H, W) / (3, H, W) float in [0, 1].
            depth: optional (H, W), (1, H, W) or (1, 1, H, W) camera z of ``image`` (0 = unknown);
                estimated by the depth backend when omitted.
            camera: optional camera of ``image`` (B = 1, any size: it is rescaled to the working size).
                Defaults to the estimator's intrinsics or ``fov_y_deg``, at the world origin.
            align_to: a camera path the depth must match in scale (e.g. a ``camera.json`` whose first
                pose is ``camera``): the depth is scaled so that the scene at the path's pivot lies at
                the pivot's depth (:func:`worldstereo.scale.scale_to_pivot`).
            align_scale: whether to apply that scaling: None (default) = only to estimated depth (a
                given depth map is left alone), True = also to a given depth, False = never.
        Returns:
            :class:`StartInfo` (with the scale factor applied).
        """
        cfg = self.config
        img = _to_image_tensor(image)
        src_h, src_w = img.shape[-2:]
        img = _resize_image(img, cfg.width, cfg.height)
        approximate, source, message, model_name, fallback = False, "given", "", "given", None
        if depth is None:
            estimator = self._depth_estimator or make_depth_estimator(
                cfg.depth_backend, cfg.depth_model, cfg.depth_device
            )
            self._depth_estimator = estimator  # kept: generated frames get their depth from it too
            est = estimator.estimate(img)
            d = est.depth
            approximate, source, message = est.approximate, est.backend, est.message
            model_name = getattr(estimator, "variant", est.backend)
            fallback = getattr(estimator, "fallback_reason", None)
            if camera is None and est.intrinsics is not None:
                K = est.intrinsics.to(torch.float32)
                camera = CameraParameters(K, torch.eye(4), cfg.width, cfg.height)
        else:
            d = _to_depth_tensor(depth, src_h, src_w)
        d = _resize_depth(d, cfg.width, cfg.height)
        if not bool((d > 0).any()):
            raise ValueError("depth has no positive value")
        if camera is None:
            camera = CameraParameters.from_fov(math.radians(cfg.fov_y_deg), cfg.width, cfg.height)
        if not isinstance(camera, CameraParameters) or len(camera) != 1:
            raise ValueError("camera must be a CameraParameters with one camera")
        camera = camera.to(dtype=torch.float32)
        if (camera.width, camera.height) != (cfg.width, cfg.height):
            camera = camera.resized(cfg.width, cfg.height)
        factor, scale_message = 1.0, ""
        if align_to is not None and (align_scale or (align_scale is None and source != "given")):
            from worldstereo.scale import scale_to_pivot

            alignment = scale_to_pivot(d, camera, align_to)
            factor, scale_message = alignment.factor, alignment.message
            d = d * factor

        self._reset_state()
        self.start_camera, self.start_image = camera, img[0]
        valid = d[d > 0]
        self.scene_depth = float(valid.median())
        fx = float(camera.K[0, 0, 0])
        self.merge_threshold = cfg.merge_threshold or 1.5 * self.scene_depth / fx

        # flying pixels exist only where a model estimated depth edges; the layout prior has none,
        # and its smooth floor changes disparity fast enough at low resolution to look like one
        floaters = cfg.filter_floaters if cfg.filter_floaters is not None else (source != "given" and not approximate)
        lifted = depth_to_points(d, camera, image=img, filter_floaters=floaters)
        self.ggm.initialize(lifted.points, colors=lifted.colors)
        confidence = (d[0] > 0).float()
        if floaters:
            confidence = confidence * lifted.mask[0].float()
        self._add_keyframe(img[0], d[0], confidence, camera, path_index=-1, frame_id=0)
        self._previous = (img[0], d[0], camera)
        self.frame_counter = 1
        self.start_info = StartInfo(
            source, approximate, message, self.scene_depth, self.ggm.num_points,
            depth_model=model_name, scale_factor=factor, scale_message=scale_message, fallback_reason=fallback,
        )
        return self.start_info

    def _reset_state(self) -> None:
        self.ssm.clear()
        self.keyframes = []
        self.paths = []
        self._history = []
        self.frame_counter = 0
        self.path_counter = 0
        self._previous = None

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
        return FrameObservation(frame, camera, pts, cols, seen, self._ggm_evictions, conf)

    def commit_frame(self, obs: FrameObservation, keyframe: bool, path_index: int, frame_id: int) -> dict[str, int]:
        """Feed one observed frame into both memories (what the pipeline does per ``update_frequency``).

        The GGM receives the new points and the re-observed points; the SSM receives the frame's
        tokens if ``keyframe``. Returns counts: ``num_added``, ``num_merged``, ``num_evicted`` (GGM
        points) and ``ssm_added``, ``ssm_evicted`` (tokens).
        """
        stats = {"num_added": 0, "num_merged": 0, "num_evicted": 0, "ssm_added": 0, "ssm_evicted": 0}
        if self.config.use_ggm:
            pose = obs.camera.w2c[0].float()
            # ids taken before an eviction may name other points now (per_step commits): then that
            # frame's re-observation is skipped rather than credited to the wrong points
            if obs.seen_ids.numel() and obs.evictions == self._ggm_evictions:
                stats["num_merged"] += self.ggm.observe(obs.seen_ids, pose)["num_merged"]
            if obs.points.shape[0] > 0:
                out = self.ggm.update(
                    obs.points, pose, colors=obs.colors, merge_threshold=self.merge_threshold, confidence=obs.confidence
                )
                stats["num_added"] += int(out["num_added"])
                stats["num_merged"] += int(out["num_merged"])
                stats["num_evicted"] += int(out["num_evicted"])
                self._ggm_evictions += int(out["num_evicted"])
        if keyframe and self.config.use_ssm:
            f = obs.frame
            added, evicted = self._add_keyframe(f.image, f.depth, f.confidence, obs.camera, path_index, frame_id)
            stats["ssm_added"], stats["ssm_evicted"] = added, evicted
        return stats

    def _add_keyframe(
        self,
        image: torch.Tensor,
        depth: torch.Tensor,
        confidence: torch.Tensor,
        camera: CameraParameters,
        path_index: int,
        frame_id: int,
    ) -> tuple[int, int]:
        """Store a keyframe and its tokens; returns (tokens added, occupied tokens replaced)."""
        kf = MemoryKeyframe(frame_id, path_index, image.clone(), depth.clone(), confidence.clone(), camera)
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
        if self._previous is None:
            raise RuntimeError("call start() first")
        image, depth, camera = self._previous
        lifted = depth_to_points(depth.unsqueeze(0), camera, image=image.unsqueeze(0), filter_floaters=False)
        return lifted.points, lifted.colors

    def previous_frame_image(self) -> torch.Tensor:
        """(3, H, W) the previous frame (the input image before any was generated)."""
        if self._previous is None:
            raise RuntimeError("call start() first")
        return self._previous[0]

    def set_previous(self, image: torch.Tensor, depth: torch.Tensor, camera: CameraParameters) -> None:
        self._previous = (image, depth, camera)

    # ------------------------------------------------------------------ generation
    def generate(self, path: Any, num_frames: int = 21) -> Iterator[Any]:
        """Generate frames along ``path``; yields :class:`worldstereo.pipeline.Step` records.

        ``path`` is a preset name (see ``worldstereo.trajectory``), a ``trajectory.Path`` of
        keyframes, or explicit ``CameraParameters`` (rescaled to the working size). A second call
        continues with the same memories; ``undo()`` takes a path back.
        """
        from worldstereo.pipeline import run_path

        return run_path(self, path, num_frames)

    def snapshot_for_undo(self) -> None:
        self._history.append(self._capture())
        del self._history[: -self.config.max_undo]

    def undo(self) -> bool:
        """Remove the last path's effect on both memories. Returns False if there is nothing to undo."""
        if not self._history:
            return False
        self._restore(self._history.pop())
        return True

    @property
    def can_undo(self) -> bool:
        return bool(self._history)

    def _capture(self) -> _State:
        return _State(
            ggm=_clone_state(self.ggm.state_dict()),
            ssm=_clone_state(self.ssm.state_dict()),
            keyframes=list(self.keyframes),
            frame_counter=self.frame_counter,
            path_counter=self.path_counter,
            previous=self._previous,
            paths=list(self.paths),
        )

    def _restore(self, state: _State) -> None:
        self.ggm.load_state_dict(state.ggm)
        self.ssm.load_state_dict(state.ssm)
        self.keyframes = list(state.keyframes)
        self.frame_counter = state.frame_counter
        self.path_counter = state.path_counter
        self._previous = state.previous
        self.paths = list(state.paths)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Store the whole state in ``directory`` (``state.safetensors`` + ``state.json``; no pickle).

        Both files are written atomically.
        """
        if not self.started:
            raise RuntimeError("nothing to save: call start() first")
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        tensors: dict[str, torch.Tensor] = {}
        extra: dict[str, Any] = {}
        for name, module in (("ggm", self.ggm), ("ssm", self.ssm)):
            for k, v in module.state_dict().items():
                if isinstance(v, torch.Tensor):
                    tensors[f"{name}.{k}"] = v.contiguous()
                else:  # module extra state (plain metadata): JSON
                    extra[f"{name}.{k}"] = v
        for i, kf in enumerate(self.keyframes):
            tensors[f"keyframe.{i}.image"] = kf.image.contiguous()
            tensors[f"keyframe.{i}.depth"] = kf.depth.contiguous()
            tensors[f"keyframe.{i}.confidence"] = kf.confidence.contiguous()
            tensors[f"keyframe.{i}.K"] = kf.camera.K.contiguous()
            tensors[f"keyframe.{i}.E"] = kf.camera.w2c.contiguous()
        prev_image, prev_depth, prev_cam = self._previous  # type: ignore[misc]
        tensors["previous.image"], tensors["previous.depth"] = prev_image.contiguous(), prev_depth.contiguous()
        tensors["previous.K"], tensors["previous.E"] = prev_cam.K.contiguous(), prev_cam.w2c.contiguous()
        tensors["start.image"] = self.start_image.contiguous()
        tensors["start.K"], tensors["start.E"] = self.start_camera.K.contiguous(), self.start_camera.w2c.contiguous()
        for i, cams in enumerate(self.paths):
            tensors[f"path.{i}.K"], tensors[f"path.{i}.E"] = cams.K.contiguous(), cams.w2c.contiguous()
        meta = {
            "version": SNAPSHOT_VERSION,
            "config": asdict(self.config),
            "frame_counter": self.frame_counter,
            "path_counter": self.path_counter,
            "scene_depth": self.scene_depth,
            "merge_threshold": self.merge_threshold,
            "keyframes": [{"frame_id": k.frame_id, "path_index": k.path_index} for k in self.keyframes],
            "num_paths": len(self.paths),
            "extra_state": extra,
        }
        # safetensors refuses views sharing storage (camera slices of one path): store copies
        tensors = {k: v.detach().clone().contiguous() for k, v in tensors.items()}
        with atomic_path(out / "state.safetensors") as tmp:
            save_file(tensors, str(tmp))
        write_text_atomic(out / "state.json", json.dumps(meta, indent=1))
        return out

    @classmethod
    def load(cls, directory: str | Path, **kwargs: Any) -> WorldStereo:
        """Restore a model saved by :meth:`save` (exactly: memories, keyframes, counters).

        The snapshot is checked before and while it is read (:mod:`worldstereo.snapshot_checks`):
        sizes, JSON fields, config bounds, tensor names, dtypes, shapes against the config, NaN/inf.
        Nothing is unpickled.

        Raises:
            ValueError (``SnapshotError``): anything wrong with the snapshot, in one line.
        """
        from worldstereo import snapshot_checks as checks

        d = Path(directory)
        checks.check_snapshot_files(d)
        meta = checks.read_meta(d, SNAPSHOT_VERSION)
        checks.check_config(meta["config"])
        checks.read_header(d / "state.safetensors")
        try:
            config = WorldStereoConfig.from_dict(meta["config"])
        except (TypeError, ValueError) as exc:
            raise checks.SnapshotError(f"state.json: bad config ({exc})") from None
        model = cls(config, **kwargs)
        try:
            tensors = load_file(str(d / "state.safetensors"))
        except Exception as exc:  # safetensors raises its own error types for malformed files
            raise checks.SnapshotError(f"state.safetensors: unreadable ({type(exc).__name__})") from None
        cfg = model.config
        reference = {f"ssm.{k}": v for k, v in model.ssm.state_dict().items() if isinstance(v, torch.Tensor)}
        reference.update({f"ggm.{k}": v for k, v in model.ggm.state_dict().items() if isinstance(v, torch.Tensor)})
        checks.check_tensors(tensors, meta, reference, cfg.width, cfg.height)

        def cam(prefix: str) -> CameraParameters:
            return CameraParameters(tensors[f"{prefix}.K"], tensors[f"{prefix}.E"], cfg.width, cfg.height)

        try:
            state: dict[str, Any] = {**tensors, **meta.get("extra_state", {})}
            model.ggm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ggm.")})
            model.ssm.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("ssm.")})
            model.keyframes = [
                MemoryKeyframe(
                    m["frame_id"],
                    m["path_index"],
                    tensors[f"keyframe.{i}.image"],
                    tensors[f"keyframe.{i}.depth"],
                    tensors[f"keyframe.{i}.confidence"],
                    cam(f"keyframe.{i}"),
                )
                for i, m in enumerate(meta["keyframes"])
            ]
            model._previous = (tensors["previous.image"], tensors["previous.depth"], cam("previous"))
            model.start_image, model.start_camera = tensors["start.image"], cam("start")
            model.paths = [cam(f"path.{i}") for i in range(meta["num_paths"])]
        except checks.SnapshotError:
            raise
        except (RuntimeError, ValueError, TypeError, KeyError, AttributeError) as exc:
            raise checks.SnapshotError(f"the snapshot does not match its config: {str(exc).splitlines()[0][:200]}") from None
        model.frame_counter = meta["frame_counter"]
        model.path_counter = meta["path_counter"]
        model.scene_depth = float(meta["scene_depth"])
        model.merge_threshold = float(meta["merge_threshold"])
        return model

    def copy(self) -> WorldStereo:
        """A deep copy (memories included)."""
        return copy.deepcopy(self)


def _clone_state(state: dict[str, Any]) -> dict[str, Any]:
    """Deep copy of a state_dict (tensors cloned, extra state copied)."""
    return {k: v.clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v) for k, v in state.items()}


def make_depth_estimator(
    name: str,
    weights: str | None = None,
    device: str | None = None,
    *,
    progress: Any = None,
    show_progress: bool = True,
) -> Any:
    """A depth estimator by registry name; ``auto`` = MoGe-2 when it can be had (cache or Hub), else the prior.

    Args:
        weights, device: MoGe-2 weights and device (see ``WorldStereoConfig.depth_model`` / ``depth_device``).
        progress: download progress callback (bytes done, total); show_progress: a bar on stderr.
    """
    from worldstereo.backends.depth import DEPTH_BACKENDS, default_depth_estimator

    if name == "auto":
        return default_depth_estimator(weights, device, progress=progress, show_progress=show_progress)
    if name == "file":
        raise ValueError("the 'file' depth backend needs a path: pass the depth map to start(depth=...)")
    if name == "moge":
        return DEPTH_BACKENDS.create(
            "moge", weights=weights, device=device, progress=progress, show_progress=show_progress
        )
    return DEPTH_BACKENDS.create(name)


# ---------------------------------------------------------------------- input conversion
def _to_image_tensor(image: Any) -> torch.Tensor:
    """Any supported image -> (1, 3, H, W) float32 in [0, 1]."""
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        t = image
    else:
        raise ValueError(f"image must be an array or tensor, got {type(image).__name__}")
    if t.ndim == 3 and t.shape[-1] in (3, 4) and t.shape[0] not in (3,):
        t = t[..., :3].permute(2, 0, 1)
    elif t.ndim == 3 and t.shape[-1] == 3 and t.shape[0] == 3 and t.dtype == torch.uint8:
        t = t.permute(2, 0, 1)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[:2] != (1, 3):
        raise ValueError(f"image must be (H, W, 3) or (1, 3, H, W), got {tuple(image.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    else:
        t = t.float()
        check_finite("image", t)
        if float(t.min()) < -1e-3 or float(t.max()) > 1.0 + 1e-3:
            raise ValueError("float image values must lie in [0, 1]")
        t = t.clamp(0, 1)
    if min(t.shape[-2:]) < 16:
        raise ValueError(f"image is too small ({t.shape[-1]}x{t.shape[-2]}); at least 16x16 pixels")
    return t


def _to_depth_tensor(depth: Any, height: int, width: int) -> torch.Tensor:
    """Any supported depth -> (1, 1, H, W) float32, validated against the image size."""
    t = torch.as_tensor(np.asarray(depth)) if not isinstance(depth, torch.Tensor) else depth
    t = t.float()
    while t.ndim < 4:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[:2] != (1, 1):
        raise ValueError(f"depth must be (H, W), (1, H, W) or (1, 1, H, W), got {tuple(depth.shape)}")
    if t.shape[-2:] != (height, width):
        raise ValueError(f"depth size {t.shape[-1]}x{t.shape[-2]} does not match the image size {width}x{height}")
    check_finite("depth", t)
    if bool((t < 0).any()):
        raise ValueError("depth must not be negative (0 = unknown)")
    return t


def _resize_image(img: torch.Tensor, width: int, height: int) -> torch.Tensor:
    if img.shape[-2:] == (height, width):
        return img
    return F.interpolate(img, size=(height, width), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def _resize_depth(depth: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Nearest resampling (no depth mixing across edges)."""
    if depth.shape[-2:] == (height, width):
        return depth
    return F.interpolate(depth, size=(height, width), mode="nearest-exact")
