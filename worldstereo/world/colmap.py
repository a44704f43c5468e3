"""A world's dataset as a COLMAP model: ``D/world/sparse/0/`` beside ``transforms.json``, written with pycolmap.

* cameras: ``PINHOLE`` (fx, fy, cx, cy in pixels), one per distinct size and intrinsics;
* images: one per dataset frame, named as its file in ``images/`` (``left_004.png``), with its pose as COLMAP
  keeps it: ``cam_from_world``, world-to-camera in OpenCV axes (x right, y down, z forward; this project's
  convention, so the transform is the dataset camera's extrinsics unchanged), in the world frame of
  ``transforms.json`` and ``pointcloud.ply`` before nerfstudio's axis change;
* points3D: the dataset's cloud (``pointcloud.ply``) with its colours. COLMAP's points carry tracks (the images
  that observed them); these are generated views with known depth, not matched features, so the tracks are
  empty and the reprojection errors 0 (readers that initialise splats from points3D, gsplat's
  ``simple_trainer`` among them, use only positions and colours).

pycolmap 4 writes COLMAP's current binary model (``cameras.bin``, ``images.bin``, ``points3D.bin``, and the
``rigs.bin`` / ``frames.bin`` of COLMAP 3.12 with one trivial rig per camera); older readers ignore the last two.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from worldstereo.world.dataset import DatasetFrame

__all__ = ["COLMAP_FOLDER", "write_colmap"]

#: the model's folder inside the dataset
COLMAP_FOLDER = Path("sparse") / "0"


def write_colmap(dataset: str | os.PathLike, frames: list[DatasetFrame], points: np.ndarray,
                 colors: np.ndarray) -> Path:
    """Write ``dataset/sparse/0`` for ``frames`` and the cloud ``points`` (N, 3) with ``colors`` (N, 3) uint8.

    The model is written into a temporary folder beside it and moved into place, so a reader never sees half a
    model. Returns the model's folder.
    """
    import pycolmap

    if not frames:
        raise ValueError("a COLMAP model needs at least one frame")
    pts = np.asarray(points, np.float64).reshape(-1, 3)
    cols = np.asarray(colors, np.uint8).reshape(-1, 3)
    if pts.shape[0] != cols.shape[0]:
        raise ValueError(f"points and colors differ in length: {pts.shape[0]} vs {cols.shape[0]}")
    rec = pycolmap.Reconstruction()
    camera_ids: dict[tuple, int] = {}
    for image_id, f in enumerate(frames, start=1):
        K = f.camera.K[0].double().numpy()
        key = (f.camera.width, f.camera.height, *np.round(K[[0, 1, 0, 1], [0, 1, 2, 2]], 6).tolist())
        if key not in camera_ids:
            camera_ids[key] = len(camera_ids) + 1
            rec.add_camera_with_trivial_rig(pycolmap.Camera(
                model="PINHOLE", width=int(f.camera.width), height=int(f.camera.height),
                params=[float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2])], camera_id=camera_ids[key]))
        w2c = f.camera.w2c[0].double().numpy()
        pose = pycolmap.Rigid3d(pycolmap.Rotation3d(w2c[:3, :3]), w2c[:3, 3])
        rec.add_image_with_trivial_frame(
            pycolmap.Image(name=f.image_path.name, camera_id=camera_ids[key], image_id=image_id), pose)
    track = pycolmap.Track()
    for p, c in zip(pts, cols, strict=True):
        rec.add_point3D(p, track, c)
    final = Path(dataset) / COLMAP_FOLDER
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".sparse-", dir=final.parent))
    try:
        rec.write(str(tmp))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final
