"""What a finished world writes beside its dataset so that other tools open it: ``splats.ply`` (Gaussian splats
of the memories, :mod:`worldstereo.splats`), ``sparse/0/`` (a COLMAP model, :mod:`.colmap`) and ``mesh.glb``
(TSDF fusion of the depths, :mod:`.mesh`). All in the world frame of ``pointcloud.ply``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from worldstereo.context import GenerationContext
from worldstereo.splats import DEFAULT_MAX_SPLATS, write_splats
from worldstereo.splats.sources import splats_from_context
from worldstereo.world.colmap import write_colmap
from worldstereo.world.dataset import read_dataset
from worldstereo.world.mesh import write_mesh

__all__ = ["ExtrasOptions", "write_extras"]

SPLATS_FILE = "splats.ply"
MESH_FILE = "mesh.glb"


@dataclass(frozen=True)
class ExtrasOptions:
    """``max_splats``: the splat budget; ``mesh``: write ``mesh.glb`` (TSDF fusion; ``--no-mesh`` skips it)."""

    max_splats: int = DEFAULT_MAX_SPLATS
    mesh: bool = True

    def __post_init__(self) -> None:
        if int(self.max_splats) < 1:
            raise ValueError(f"--max-splats must be at least 1, got {self.max_splats}")


def write_extras(dataset: Path, ctx: GenerationContext, cloud: tuple[torch.Tensor, torch.Tensor],
                 options: ExtrasOptions = ExtrasOptions(), note: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write ``splats.ply``, ``sparse/0`` and (unless ``options.mesh`` is False) ``mesh.glb`` into ``dataset``.

    Args:
        dataset: the dataset folder (``D/world``), its ``transforms.json`` written.
        ctx: the world's memories.
        cloud: ``pointcloud.ply``'s points and colours (:attr:`DatasetWriter.cloud`).
    Returns:
        What was written, for ``world.json``: per file its size and seconds, with the splat and mesh figures.
    """
    say = note or (lambda _m: None)
    out: dict[str, Any] = {}
    t = time.perf_counter()
    g, info = splats_from_context(ctx, options.max_splats)
    path = write_splats(g, dataset / SPLATS_FILE)
    out["splats"] = {"file": SPLATS_FILE, "splats": info.splats, "points": info.points, "voxel": info.voxel,
                     "median_radius": info.median_radius, "bytes": path.stat().st_size,
                     "seconds": round(time.perf_counter() - t, 2)}
    say(f"splats: {info.splats:,} from {info.points:,} points -> {path}")
    t = time.perf_counter()
    frames = read_dataset(dataset)
    pts, cols = cloud
    model = write_colmap(dataset, frames, pts.numpy(), (cols.clamp(0, 1) * 255 + 0.5).byte().numpy())
    out["colmap"] = {"folder": str(model.relative_to(dataset)), "images": len(frames), "points3D": int(pts.shape[0]),
                     "seconds": round(time.perf_counter() - t, 2)}
    if options.mesh:
        t = time.perf_counter()
        m = write_mesh(dataset / MESH_FILE, frames, pts.numpy(), ctx.device)
        out["mesh"] = {"file": MESH_FILE, "vertices": m.vertices, "faces": m.faces, "voxel": m.voxel,
                       "truncation": m.truncation, "grid": list(m.shape), "frames": m.frames,
                       "bytes": (dataset / MESH_FILE).stat().st_size, "seconds": round(time.perf_counter() - t, 2)}
        say(f"mesh: {m.vertices:,} vertices, voxel {m.voxel:.4g} -> {dataset / MESH_FILE}")
    return out
