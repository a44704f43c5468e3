"""The loop: incremental generation along a camera path as a stream of :class:`Step` records.

It drives a :class:`~worldstereo.context.GenerationContext` and a frame generator; it knows
neither the model nor a concrete backend. :meth:`WorldStereo.generate` calls :func:`run_path`.
The CLI, the app and the tests consume the same stream; nothing computes a frame twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.keyframes import keyframe_positions
from worldstereo.limits import check_path_frames
from worldstereo.records import AttentionSummary

if TYPE_CHECKING:
    from worldstereo.backends.generators import FrameGenerator
    from worldstereo.context import GenerationContext
    from worldstereo.records import FrameObservation


#: a frame whose GGM render is more than this share holes shows (almost) nothing known
BLANK_HOLE_SHARE = 0.9


@dataclass
class MemoryStats:
    """Memory statistics after a step."""

    points_total: int
    points_added: int
    points_merged: int
    points_evicted: int
    ssm_occupancy: float
    ssm_entries: int
    ssm_added: int
    ssm_evicted: int
    keyframes: int


@dataclass
class Step:
    """One generated frame and everything needed to show or evaluate it.

    Attributes:
        path_index: index of the path in this exploration (0 = first ``generate`` call).
        frame_index: index of the frame in its path.
        num_frames: frames in the path.
        frame_id: global frame counter (0 = the input image).
        image: (3, H, W) float32 in [0, 1].
        depth: (1, H, W) float32 camera z.
        camera: the frame's camera (B = 1).
        ggm_render: (3, H, W) the GGM rendered into the camera before generation.
        ggm_hole_mask: (1, H, W) bool, True where the GGM render had no point.
        new_surface_mask: (1, H, W) bool, True where the frame showed surface no memory held.
        is_keyframe: whether the frame was (or will be, with ``per_step``) stored in the SSM.
        references: frame ids of the SSM keyframes the frame drew on.
        attention: SSM attention summary (None when the SSM was not used).
        memory: memory statistics after the frame was committed (per ``update_frequency``).
        timings: stage -> milliseconds (``render``, ``ssm``, ``inpaint``, ``update``, ``total``).
    """

    path_index: int
    frame_index: int
    num_frames: int
    frame_id: int
    image: torch.Tensor
    depth: torch.Tensor
    camera: CameraParameters
    ggm_render: torch.Tensor
    ggm_hole_mask: torch.Tensor
    new_surface_mask: torch.Tensor
    is_keyframe: bool
    references: list[int]
    attention: AttentionSummary | None
    memory: MemoryStats
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def hole_share(self) -> float:
        """Share of the frame the memories did not know (GGM render holes before generation), in [0, 1]."""
        return float(self.ggm_hole_mask.float().mean())

    @property
    def blank(self) -> bool:
        """Nothing known was in view (over 90% holes): the frame is the generator's fill alone."""
        return self.hole_share > BLANK_HOLE_SHARE

    def image_uint8(self):
        """(H, W, 3) uint8 numpy image (for files, Gradio, viser)."""
        return (self.image.permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()


def resolve_cameras(ctx: GenerationContext, path: Any, num_frames: int) -> CameraParameters:
    """Turn a preset name, a ``trajectory.Path`` or explicit cameras into the working-size cameras of a path."""
    cfg = ctx.config
    if isinstance(num_frames, bool) or not isinstance(num_frames, int) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    if not isinstance(path, CameraParameters):
        check_path_frames(num_frames, "the path")
    if isinstance(path, str):
        cams = trajectory.preset(path, ctx.start_camera, num_frames, scene_depth=ctx.scene_depth)
    elif isinstance(path, trajectory.Path):
        cams = path.sample(num_frames, cfg.width, cfg.height)
    elif isinstance(path, CameraParameters):
        cams = path
    else:
        raise ValueError(f"path must be a preset name, a trajectory.Path or CameraParameters, got {type(path).__name__}")
    check_path_frames(len(cams), "the path")
    cams = cams.to(dtype=torch.float32)
    if (cams.width, cams.height) != (cfg.width, cfg.height):
        cams = cams.resized(cfg.width, cfg.height)
    return cams


def run_path(
    ctx: GenerationContext,
    generator: FrameGenerator,
    path: Any,
    num_frames: int = 21,
    record: list[tuple[FrameObservation, bool]] | None = None,
) -> Iterator[Step]:
    """Generate frames along ``path`` with ``generator`` and the memories of ``ctx``; see :meth:`WorldStereo.generate`.

    Memories are updated per ``config.update_frequency``: ``per_frame`` after every frame,
    ``per_step`` once the path ends (also when the caller stops early: the frames generated so far
    are committed, so the memories stay consistent), ``manual`` never (call ``ctx.commit_frame``).
    ``record``, when given, receives ``(observation, is_keyframe)`` of every frame in order: what a
    world's round folds into its memories (:mod:`worldstereo.world.rounds`).
    """
    if not ctx.started:
        raise RuntimeError("call start() before generate()")
    cameras = resolve_cameras(ctx, path, num_frames)
    return _run(ctx, generator, cameras, record)


def _run(
    ctx: GenerationContext,
    generator: FrameGenerator,
    cameras: CameraParameters,
    record: list[tuple[FrameObservation, bool]] | None,
) -> Iterator[Step]:
    cfg = ctx.config
    ctx.snapshot_for_undo()
    path_index = ctx.path_counter
    ctx.path_counter += 1
    ctx.paths.append(cameras)
    n = len(cameras)
    keyframes = set(keyframe_positions(n, cfg.keyframes_per_clip))
    generator.begin_clip(ctx, cameras)
    pending: list[tuple[FrameObservation, bool, int, int]] = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            cam = cameras[i]
            frame = generator.generate_frame(ctx, cam, i)
            frame_id = ctx.frame_counter
            is_key = i in keyframes
            t1 = time.perf_counter()
            upd = dict.fromkeys(("num_added", "num_merged", "num_evicted", "ssm_added", "ssm_evicted"), 0)
            obs = ctx.observe(frame, cam) if record is not None else None
            if ctx.ggm.should_update("frame"):
                upd = ctx.commit_frame(obs or ctx.observe(frame, cam), is_key, path_index, frame_id)
            elif ctx.ggm.should_update("clip"):
                pending.append((obs or ctx.observe(frame, cam), is_key, path_index, frame_id))
            if record is not None:
                record.append((obs, is_key))
            ctx.set_previous(frame.image, frame.depth, cam)
            ctx.frame_counter += 1
            timings = dict(frame.timings)
            timings["update"] = (time.perf_counter() - t1) * 1e3
            timings["total"] = (time.perf_counter() - t0) * 1e3
            stats = MemoryStats(
                points_total=ctx.ggm.num_points,
                points_added=upd["num_added"],
                points_merged=upd["num_merged"],
                points_evicted=upd["num_evicted"],
                ssm_occupancy=float(ctx.ssm.occupancy),
                ssm_entries=int(ctx.ssm.occupied_mask.sum()),
                ssm_added=upd["ssm_added"],
                ssm_evicted=upd["ssm_evicted"],
                keyframes=len(ctx.keyframes),
            )
            yield Step(
                path_index=path_index,
                frame_index=i,
                num_frames=n,
                frame_id=frame_id,
                image=frame.image,
                depth=frame.depth,
                camera=cam,
                ggm_render=frame.ggm_render,
                ggm_hole_mask=frame.ggm_hole_mask,
                new_surface_mask=frame.new_surface_mask,
                is_keyframe=is_key,
                references=frame.references,
                attention=frame.attention,
                memory=stats,
                timings=timings,
            )
    finally:
        for obs, is_key, p, fid in pending:
            ctx.commit_frame(obs, is_key, p, fid)
