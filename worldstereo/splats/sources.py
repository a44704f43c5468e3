"""Where splats come from: a model's memories, or a folder on disk (a world, a ``generate`` output, a snapshot).

* a world folder ``D`` (``world.json``): the memories after its last finished trajectory, ``D/state/current``;
* a ``generate`` output folder (``run.json``): its ``snapshot/``;
* a snapshot: a folder with ``state.json`` and ``state.safetensors``, or the app's snapshot ``.zip``.

Each is read as :meth:`WorldStereo.load` reads snapshots (checked, nothing unpickled), into a bare
generation context.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from worldstereo.context import GenerationContext
from worldstereo.splats.gaussians import Gaussians
from worldstereo.splats.surfels import DEFAULT_MAX_SPLATS, SurfelInfo, surfels_from_points

__all__ = ["SplatSourceError", "find_snapshot", "load_context", "splats_from_context", "splats_from_source"]


class SplatSourceError(ValueError):
    """A source folder that holds no memories to make splats of."""


def splats_from_context(ctx: GenerationContext, max_splats: int = DEFAULT_MAX_SPLATS) -> tuple[Gaussians, SurfelInfo]:
    """Surfels of a context's GGM (:func:`~worldstereo.splats.surfels.surfels_from_points`), footprints from its
    start camera's focal length."""
    ggm = ctx.ggm
    if ggm.num_points == 0:
        raise SplatSourceError("the memory holds no points: start or generate first")
    focal = float(ctx.start_camera.K[0, 0, 0]) if ctx.start_camera is not None else None
    return surfels_from_points(ggm.point_cloud, ggm.point_colors, ggm.point_confidence, ggm.observer_centers,
                               focal, max_splats, ctx.merge_threshold)


def find_snapshot(source: str | os.PathLike) -> Path:
    """The snapshot folder of a world folder, a ``generate`` output folder or a snapshot folder."""
    src = Path(source)
    if not src.exists():
        raise SplatSourceError(f"{src}: no such file or folder")
    if src.is_file():
        raise SplatSourceError(f"{src}: expected a world folder, a 'generate' output folder, a snapshot folder or "
                               "a snapshot .zip")
    for candidate, what in ((src / "state" / "current", "world"), (src / "snapshot", "generate output"), (src, "")):
        if (candidate / "state.json").is_file() and (candidate / "state.safetensors").is_file():
            return candidate
        if what and (src / ("world.json" if what == "world" else "run.json")).is_file():
            raise SplatSourceError(f"{src}: a {what} folder without its memories ({candidate} is missing or "
                                   "incomplete; was the run interrupted before its first path?)")
    raise SplatSourceError(f"{src}: not a world folder (world.json), a 'generate' output (run.json + snapshot/) "
                           "or a snapshot (state.json + state.safetensors)")


def splats_from_source(source: str | os.PathLike, max_splats: int = DEFAULT_MAX_SPLATS) -> tuple[Gaussians, SurfelInfo]:
    """Splats of the memories stored at ``source`` (module docstring).

    Raises:
        ValueError: a missing or foreign folder, a snapshot this version cannot read, an empty memory, a bad budget.
    """
    from worldstereo.snapshot_checks import extract_snapshot_zip

    src = Path(source)
    if src.is_file() and src.suffix.lower() == ".zip":
        with tempfile.TemporaryDirectory(prefix="worldstereo-splats-") as tmp:
            ctx = load_context(extract_snapshot_zip(src, Path(tmp)))
    else:
        ctx = load_context(find_snapshot(src))
    return splats_from_context(ctx, max_splats)


def load_context(folder: Path) -> GenerationContext:
    """The memories of a snapshot folder, without a model (no depth estimator or generator is made)."""
    from worldstereo.snapshot import read_snapshot_config, restore_snapshot

    config, meta = read_snapshot_config(folder)
    ctx = GenerationContext(config)
    restore_snapshot(ctx, folder, meta)
    return ctx
