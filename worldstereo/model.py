"""The ``WorldStereo`` model: composes a generation context (both memories), a depth estimator and a
frame generator under one config.

Usage::

    model = WorldStereo(WorldStereoConfig())
    model.start(image)                        # (H, W, 3) uint8 or (1, 3, H, W) float in [0, 1]
    for step in model.generate("eloop", num_frames=21):
        ...                                   # a Step per frame (worldstereo.pipeline.Step)
    model.undo()                              # drop the last path's effect on both memories
    model.save("snapshot/"); WorldStereo.load("snapshot/")

The memories and their updates live in :class:`~worldstereo.context.GenerationContext`
(``model.context``), which the backends see; the loop is :func:`worldstereo.pipeline.run_path`;
backends are picked by :mod:`worldstereo.backends.factory`. The model's attributes ``ggm``,
``ssm``, ``keyframes``, ``scene_depth``... and its methods ``observe``, ``commit_frame`` and
``keyframe_by_id`` are the context's.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worldstereo import snapshot
from worldstereo.backends.factory import make_depth_estimator, make_generator
from worldstereo.backends.generators import FrameGenerator
from worldstereo.camera import CameraParameters
from worldstereo.config import GENERATOR_CHOICES, UPDATE_FREQUENCIES, WorldStereoConfig
from worldstereo.context import GENERATED_CONFIDENCE, OBSERVED_CONFIDENCE, GenerationContext
from worldstereo.inputs import resize_depth, resize_image, to_depth_tensor, to_image_tensor
from worldstereo.panorama.bank import official_bank_cameras, polar_cameras, split_panorama, view_name
from worldstereo.panorama.equirect import check_panorama_size, range_to_z, working_panorama_size
from worldstereo.panorama.lift import start_camera_for
from worldstereo.panorama.views import ViewDepths, check_views, estimate_view_depths
from worldstereo.pipeline import Step, run_path
from worldstereo.records import InputViews
from worldstereo.scale import scale_to_pivot

__all__ = [
    "GENERATED_CONFIDENCE",
    "GENERATOR_CHOICES",
    "OBSERVED_CONFIDENCE",
    "UPDATE_FREQUENCIES",
    "StartInfo",
    "WorldStereo",
    "WorldStereoConfig",
    "make_depth_estimator",
]


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
        kind: what the exploration started from: ``image``, ``panorama`` or ``views`` (posed views).
        num_views: views the memories were seeded from (1 for an image; 29 for a panorama: its bank and poles).
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
    kind: str = "image"
    num_views: int = 1


class _ContextAttribute:
    """A model attribute that is the generation context's (read and write)."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        return self if obj is None else getattr(obj.context, self.name)

    def __set__(self, obj: Any, value: Any) -> None:
        setattr(obj.context, self.name, value)


class WorldStereo:
    """A generation context (both memories) + a depth estimator + a frame generator (see the module docstring).

    Args:
        config: the configuration; defaults to :class:`WorldStereoConfig`.
        depth_estimator: optional ready estimator (overrides ``config.depth_backend``).
        generator: optional ready frame generator (overrides ``config.generator``).
    """

    ggm = _ContextAttribute()
    ssm = _ContextAttribute()
    patch_encoder = _ContextAttribute()
    keyframes = _ContextAttribute()
    start_camera = _ContextAttribute()
    start_image = _ContextAttribute()
    scene_depth = _ContextAttribute()
    merge_threshold = _ContextAttribute()
    frame_counter = _ContextAttribute()
    path_counter = _ContextAttribute()
    paths = _ContextAttribute()
    #: the inspection record of every committed frame (:class:`~worldstereo.history.MemoryHistory`): ``state_at(frame_id)``
    history = _ContextAttribute()
    # memory operations of the context, for ``update_frequency="manual"`` and inspection
    observe = _ContextAttribute()
    commit_frame = _ContextAttribute()
    keyframe_by_id = _ContextAttribute()

    def __init__(
        self,
        config: WorldStereoConfig | None = None,
        depth_estimator: Any | None = None,
        generator: FrameGenerator | None = None,
    ) -> None:
        self.config = config or WorldStereoConfig()
        self.context = GenerationContext(self.config)
        self.context.depth_estimator = depth_estimator
        #: which generator runs, and why (a fallback's reason)
        self.generator_message = ""
        #: why ``vace`` did not run (a ``WeightsUnavailableError.reason``), None when nothing fell back
        self.generator_fallback: str | None = None
        if generator is not None:
            self.generator = generator
            self.generator_message = getattr(generator, "message", "") or generator.name
        else:
            choice = make_generator(self.config)
            self.generator, self.generator_message, self.generator_fallback = (
                choice.generator, choice.message, choice.fallback
            )
        self.start_info: StartInfo | None = None
        #: the real views the last start was seeded from, as given (not part of a snapshot)
        self.input_views: InputViews | None = None

    @property
    def started(self) -> bool:
        return self.context.started

    def frame_depth_estimator(self) -> Any | None:
        """A learned depth estimator for generated frames (see :meth:`GenerationContext.frame_depth_estimator`)."""
        return self.context.frame_depth_estimator()

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
        img = to_image_tensor(image)
        src_h, src_w = img.shape[-2:]
        img = resize_image(img, cfg.width, cfg.height)
        approximate, source, message, model_name, fallback = False, "given", "", "given", None
        if depth is None:
            estimator = self.context.depth_estimator or make_depth_estimator(
                cfg.depth_backend, cfg.depth_model, cfg.depth_device or cfg.model_device()
            )
            self.context.depth_estimator = estimator  # kept: generated frames get their depth from it too
            est = estimator.estimate(img)
            d = est.depth
            approximate, source, message = est.approximate, est.backend, est.message
            model_name = getattr(estimator, "variant", est.backend)
            fallback = getattr(estimator, "fallback_reason", None)
            if camera is None and est.intrinsics is not None:
                K = est.intrinsics.to(torch.float32)
                camera = CameraParameters(K, torch.eye(4), cfg.width, cfg.height)
        else:
            d = to_depth_tensor(depth, src_h, src_w)
        d = resize_depth(d, cfg.width, cfg.height)
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
            alignment = scale_to_pivot(d, camera, align_to)
            factor, scale_message = alignment.factor, alignment.message
            d = d * factor

        # flying pixels exist only where a model estimated depth edges; the layout prior has none,
        # and its smooth floor changes disparity fast enough at low resolution to look like one
        floaters = cfg.filter_floaters if cfg.filter_floaters is not None else (source != "given" and not approximate)
        self.context.seed(img, d, camera, filter_floaters=floaters)
        self.input_views = InputViews(_uint8_views(img), d.clone(), camera, ["input_000"])
        self.start_info = StartInfo(
            source, approximate, message, self.context.scene_depth, self.context.ggm.num_points,
            depth_model=model_name, scale_factor=factor, scale_message=scale_message, fallback_reason=fallback,
        )
        return self.start_info

    # ------------------------------------------------------------------ posed views and panoramas
    def start_views(self, images: Any, cameras: CameraParameters, depths: Any | None = None, *,
                    labels: list[str] | None = None) -> StartInfo:
        """Reset both memories and seed them with posed views (a pano bank is one; so is any posed photo set).

        Every view enters the GGM (views of one centre partition the sphere, so each direction is held
        once; :meth:`GenerationContext.seed_views`) and the SSM as a keyframe (frame ids ``0..N-1``,
        named by ``labels`` in attention maps). Paths start at view 0's pose with a working-size
        camera of square pixels and view 0's vertical field of view. The SSM is enlarged where it
        cannot hold every view plus two paths' keyframes.

        Args:
            images: (N, H, W, 3) uint8 or (N, 3, H, W) float in [0, 1] (or a list of single images), N >= 2.
            cameras: N cameras of the views (world-to-camera, OpenCV axes; any size, rescaled to the images').
            depths: optional (N, H, W) camera z of every view (0 = unknown), used as given; else estimated
                per view and brought to one scale (MoGe-2), or the offline room prior (approximate).
            labels: N names for attention maps (default ``view 0000``, ...).
        Returns:
            :class:`StartInfo` with ``kind="views"``.
        """
        cfg = self.config
        imgs, cams, given = check_views(images, cameras, depths)
        n = imgs.shape[0]
        names = list(labels) if labels is not None else [f"view {view_name(i)}" for i in range(n)]
        if len(names) != n:
            raise ValueError(f"labels must name every view ({n}), got {len(names)}")
        enlarged = self._fit_ssm_to(n)
        if given is None:
            estimator = self.context.depth_estimator or make_depth_estimator(
                cfg.depth_backend, cfg.depth_model, cfg.depth_device or cfg.model_device()
            )
            self.context.depth_estimator = estimator
            vd = estimate_view_depths(estimator, imgs, cams)
        else:
            vd = ViewDepths(given, "given", False, "depth given for every view", "given")
        start_camera = start_camera_for(cams[0], self.config.width, self.config.height)
        stride = self.context.seed_views(imgs, vd.depths, cams, start_camera, names)
        self.input_views = InputViews(_uint8_views(imgs), vd.depths.float(), cams, [f"view_{i:04d}" for i in range(n)])
        notes = [vd.message]
        if stride > 1:
            notes.append(f"every {stride}th pixel kept to stay within max_points ({self.config.max_points:,})")
        if enlarged:
            notes.append(f"SSM enlarged to {self.config.memory_size:,} tokens to hold all {n} views")
        self.start_info = StartInfo(
            vd.source, vd.approximate, "; ".join(notes), self.context.scene_depth, self.context.ggm.num_points,
            depth_model=vd.model, fallback_reason=vd.fallback_reason, kind="views", num_views=n,
        )
        return self.start_info

    def start_panorama(self, image: Any, depth: Any | None = None) -> StartInfo:
        """Reset both memories and seed them with a 360-degree equirectangular panorama.

        The panorama (2:1; see :mod:`worldstereo.panorama.equirect` for the convention; wider than
        :data:`~worldstereo.panorama.equirect.MAX_PANORAMA_WIDTH` is downscaled) is split into the
        official bank of 27 views (:mod:`worldstereo.panorama.bank`) plus a view straight up and one
        straight down (a panorama holds its poles; the bank stops at 71.6 degrees), which seed both
        memories as in :meth:`start_views`. Paths start at the centre looking along view 0000 (-X, world up +Z).

        Args:
            image: (H, W, 3) uint8 or (1, 3, H, W) float in [0, 1], W = 2H.
            depth: optional (H, W) range from the centre along each pixel's ray (0 = unknown).
        Returns:
            :class:`StartInfo` with ``kind="panorama"``; its message says how depth was made and that
            looking around from the centre is exact at any depth while moving away needs real depth.
        """
        img = to_image_tensor(image)
        h, w = img.shape[-2:]
        check_panorama_size(w, h)
        wp, hp = working_panorama_size(w, h)
        rng = to_depth_tensor(depth, h, w) if depth is not None else None
        img = resize_image(img, wp, hp)
        pano = img[0].permute(1, 2, 0).contiguous().numpy()
        cams = CameraParameters.cat([official_bank_cameras(), polar_cameras()])  # the bank, and the poles it misses
        views = torch.from_numpy(split_panorama(pano, cams)).permute(0, 3, 1, 2).clamp(0, 1)
        depths = None
        if rng is not None:
            rng = resize_depth(rng, wp, hp)[0, 0].numpy()
            ranges = torch.from_numpy(split_panorama(rng, cams, nearest=True))
            depths = range_to_z(ranges, cams._camera_directions()[0].float())
        labels = [f"bank view {view_name(i)}" for i in range(len(cams) - 2)] + ["view up", "view down"]
        info = self.start_views(views, cams, depths, labels=labels)
        exact = ("looking around from the centre is exact at any depth; moving away from it needs real depth"
                 + (" (this depth is approximate)" if info.approximate else ""))
        info.kind = "panorama"
        info.message = f"panorama ({w}x{h}" + (f", worked at {wp}x{hp}" if (wp, hp) != (w, h) else "") + \
            f", the 27 bank views and the poles): {info.message}; {exact}"
        return info

    def _fit_ssm_to(self, num_views: int) -> bool:
        """Rebuild an empty context with an SSM that holds ``num_views`` views plus two paths' keyframes; True if enlarged."""
        cfg = self.config
        tokens = (cfg.width // cfg.patch_size) * (cfg.height // cfg.patch_size)
        need = (num_views + 2 * cfg.keyframes_per_clip) * tokens
        if cfg.memory_size >= need:
            return False
        estimator = self.context.depth_estimator
        self.config = dataclasses.replace(cfg, memory_size=need)
        self.context = GenerationContext(self.config)
        self.context.depth_estimator = estimator
        return True

    # ------------------------------------------------------------------ generation
    def generate(self, path: Any, num_frames: int = 21) -> Iterator[Step]:
        """Generate frames along ``path``; yields :class:`worldstereo.pipeline.Step` records.

        ``path`` is a preset name (see ``worldstereo.trajectory``), a ``trajectory.Path`` of
        keyframes, or explicit ``CameraParameters`` (rescaled to the working size). A second call
        continues with the same memories; ``undo()`` takes a path back.
        """
        return run_path(self.context, self.generator, path, num_frames)

    def undo(self) -> bool:
        """Remove the last path's effect on both memories. Returns False if there is nothing to undo."""
        return self.context.undo()

    @property
    def can_undo(self) -> bool:
        return self.context.can_undo

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """Store the whole state in ``directory`` (``state.safetensors`` + ``state.json``; no pickle).

        Both files are written atomically (:func:`worldstereo.snapshot.save_snapshot`).
        """
        return snapshot.save_snapshot(self.context, directory)

    @classmethod
    def load(cls, directory: str | Path, **kwargs: Any) -> WorldStereo:
        """Restore a model saved by :meth:`save` (exactly: memories, keyframes, counters).

        The snapshot is checked before and while it is read (:mod:`worldstereo.snapshot_checks`):
        sizes, JSON fields, config bounds, tensor names, dtypes, shapes against the config, NaN/inf.
        Nothing is unpickled. ``kwargs`` go to the constructor (a ready depth estimator or generator).

        Raises:
            ValueError (``SnapshotError``): anything wrong with the snapshot, in one line.
        """
        config, meta = snapshot.read_snapshot_config(directory)
        model = cls(config, **kwargs)
        snapshot.restore_snapshot(model.context, directory, meta)
        return model

    def copy(self) -> WorldStereo:
        """A deep copy (memories included)."""
        return copy.deepcopy(self)


def _uint8_views(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) float in [0, 1] -> (N, H, W, 3) uint8."""
    return (images.permute(0, 2, 3, 1).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8)
