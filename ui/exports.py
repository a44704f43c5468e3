"""Downloads of a session, each written atomically into the session's temp dir.

Video (mp4), point cloud (PLY and GLB), Gaussian splats (INRIA ``.ply``: :mod:`worldstereo.splats`), cameras
(official ``camera.json``), the edited path (nerfstudio ``camera_path.json``) and a memory snapshot (zip of
``WorldStereo.save``).
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from worldstereo.atomic import atomic_path
from worldstereo.camera import CameraParameters
from worldstereo.exports import write_video
from worldstereo.formats import NerfstudioPath, write_camera_json, write_nerfstudio_path, write_point_cloud
from worldstereo.model import WorldStereo
from worldstereo.splats import write_splats
from worldstereo.splats.sources import splats_from_context


@dataclass(frozen=True)
class ExportFiles:
    """Paths of the files written by :func:`export_all` (None where there was nothing to write)."""

    video: Path | None
    ply: Path
    glb: Path
    splats: Path
    cameras: Path | None
    nerfstudio: Path | None
    snapshot: Path

    def as_list(self) -> list[str]:
        return [str(p) for p in (self.video, self.ply, self.glb, self.splats, self.cameras, self.nerfstudio, self.snapshot)
                if p]


def write_snapshot_zip(path: str | Path, model: WorldStereo) -> Path:
    """Zip of a ``model.save`` directory (``state.safetensors`` + ``state.json``)."""
    out = Path(path)
    work = Path(tempfile.mkdtemp(prefix="snapshot-", dir=out.parent))
    try:
        model.save(work / "snapshot")
        with atomic_path(out) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED) as zf:
            for f in sorted((work / "snapshot").iterdir()):
                zf.write(f, arcname=f"snapshot/{f.name}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def all_path_cameras(model: WorldStereo) -> CameraParameters | None:
    """Every generated camera of the exploration, in order (None before the first path)."""
    if not model.paths:
        return None
    return CameraParameters.cat(list(model.paths))


def export_all(directory: str | Path, model: WorldStereo, frames: Sequence[np.ndarray]) -> ExportFiles:
    """Write every download of the current exploration into ``directory``."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for stale in ("video.mp4", "cameras.json", "camera_path.json"):  # an earlier export's, when there is none now
        (d / stale).unlink(missing_ok=True)
    video = write_video(d / "video.mp4", frames) if frames else None
    pts = model.ggm.point_cloud.float()
    cols = model.ggm.point_colors.float().clamp(0, 1)
    ply = write_point_cloud(d / "pointcloud.ply", pts, cols)
    glb = write_point_cloud(d / "pointcloud.glb", pts, cols)
    splats = write_splats(splats_from_context(model.context)[0], d / "splats.ply")
    cams = all_path_cameras(model)
    cam_file = write_camera_json(d / "cameras.json", cams) if cams is not None else None
    ns_file = write_nerfstudio_path(d / "camera_path.json", NerfstudioPath(cams.to(dtype=cams.dtype))) if cams is not None else None
    snap = write_snapshot_zip(d / "memory_snapshot.zip", model)
    return ExportFiles(video, ply, glb, splats, cam_file, ns_file, snap)
