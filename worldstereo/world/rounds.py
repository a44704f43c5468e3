"""Rounds: every trajectory of a round starts from the memories the round began with; their frames are
then folded into the memories in plan order.

So a trajectory never sees the others of its own round (they may run in parallel, on other workers),
later rounds see every frame of the earlier ones, and the world is the same whatever ran where.

Folding a trajectory commits its frames' observations (new points, keyframes) to the memories in
order, with fresh frame ids. A frame's re-observations of GGM points are kept for points of the
round's starting memories (their ids are stable while nothing is evicted) and dropped for points the
trajectory added itself (in the fold they may have merged into another trajectory's points).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

import torch

from worldstereo.camera import CameraParameters
from worldstereo.context import ContextState, GenerationContext
from worldstereo.frame_layers import FrameLayers
from worldstereo.pipeline import Step, run_path
from worldstereo.records import FrameObservation

__all__ = ["Generated", "RoundBase", "fold", "generate_from"]


@dataclass
class RoundBase:
    """The memories a round begins with: their state, GGM size and eviction count."""

    state: ContextState | None
    num_points: int
    evictions: int

    @classmethod
    def of(cls, ctx: GenerationContext) -> RoundBase:
        return cls(ctx.capture(), ctx.ggm.num_points, ctx.ggm_evictions)


@dataclass
class Generated:
    """One trajectory generated from a round's base: its cameras and every frame's observation, in order."""

    cameras: CameraParameters
    observations: list[tuple[FrameObservation, bool]]


def generate_from(
    ctx: GenerationContext, generator, base: RoundBase, cameras: CameraParameters,
    on_step: Callable[[Step], None] | None = None,
) -> Generated:
    """Generate one trajectory from ``base`` (restored into ``ctx`` first; a ``base`` whose ``state`` is None: the caller
    restored it already); ``on_step`` sees each Step."""
    if base.state is not None:
        ctx.restore(base.state)
    record: list[tuple[FrameObservation, bool]] = []
    steps: Iterator[Step] = run_path(ctx, generator, cameras, len(cameras), record=record)
    # the fold records these frames (the trajectory's own commits are thrown away), and the round restores the
    # memories it needs (a trajectory is never undone): no history, no undo copy
    ctx.undo_enabled = False
    try:
        with ctx.history.paused():
            for step in steps:
                if on_step is not None:
                    on_step(step)
    finally:
        ctx.undo_enabled = True
    kept = []
    nothing = torch.zeros(0)
    for obs, is_key in record:
        ids = obs.seen_ids
        ids = ids[ids < base.num_points] if obs.evictions == base.evictions else ids[:0]
        # what the fold, the files and the history need (the renders and attention stay behind, the history's
        # small layers made of them travel: a result may go to another machine)
        layers = FrameLayers.of(obs.frame) if ctx.history.enabled else None
        frame = replace(obs.frame, ggm_render=nothing, ggm_hole_mask=nothing, new_surface_mask=nothing,
                        ggm_point_ids=None, attention=None, extra_points=None, extra_colors=None)
        kept.append((replace(obs, frame=frame, seen_ids=ids, evictions=base.evictions, layers=layers), is_key))
    return Generated(cameras, kept)


def fold(ctx: GenerationContext, base: RoundBase, generated: Generated, name: str | None = None) -> None:
    """Commit a generated trajectory to ``ctx`` (the memories so far in this round), as its next path (``name``: what
    the history calls it)."""
    path_index = ctx.path_counter
    ctx.path_counter += 1
    if name is not None:
        ctx.history.path_names[path_index] = name
    ctx.paths.append(generated.cameras)
    ids_valid = ctx.ggm_evictions == base.evictions
    for obs, is_key in generated.observations:
        if not ids_valid:
            obs = replace(obs, seen_ids=torch.zeros(0, dtype=torch.int64))
        ctx.commit_frame(replace(obs, evictions=ctx.ggm_evictions), is_key, path_index, ctx.frame_counter)
        ctx.frame_counter += 1
        ids_valid = ids_valid and ctx.ggm_evictions == base.evictions
    if generated.observations:
        last, _ = generated.observations[-1]
        ctx.set_previous(last.frame.image, last.frame.depth, last.camera)
