"""Writing a world's dataset as it grows: the input views, each trajectory's frames, and at the end (or at an
interruption) ``transforms.json`` and ``pointcloud.ply`` (formats in :mod:`worldstereo.world.dataset`).

Per frame ``NAME_NNN``:

* ``images/NAME_NNN.png``: the frame (8-bit RGB);
* ``depths/NAME_NNN.png``: 16-bit camera z in millimetres, **0 where unknown or guessed**: depth continued
  from a hole's background side (:attr:`FrameResult.depth_guessed`, also where an earlier frame's guess is
  rendered) never reaches depth supervision, nor a generated frame's depth within a pixel of a
  discontinuity (a disparity range over :data:`EDGE_DISPARITY` in 3 x 3 pixels: where the splats of two
  surfaces meet, a render holds the nearer one's depth a pixel too far);
* ``masks/NAME_NNN.png``: 255 where the pixel is the memories' or a learned model's (``vace``, LaMa), **0
  exactly where a fallback filled it** (Telea, the blank-view fill) or nothing did (fill ``none``):
  nerfstudio's ``mask_path``, whose trainers ignore pixels at 0.

The input views come first (``input_000`` for a photo; ``view_0000``... for posed views and panoramas, at
their own size and cameras). A frame whose pose repeats one already in the dataset (within
:data:`POSE_TOLERANCE_DEG` and :data:`POSE_TOLERANCE_REL` of the scene depth) is not written: a trainer
would get two answers for one camera. Every trajectory starts at the input pose, so its first frame is
one of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldstereo.exports import PNG_LEVEL, write_depth_png, write_image_png
from worldstereo.geometry.depth import disparity_edges
from worldstereo.records import FrameObservation, InputViews
from worldstereo.world.dataset import frame_entry, write_point_cloud_budget, write_transforms

__all__ = ["EDGE_DISPARITY", "POSE_TOLERANCE_DEG", "POSE_TOLERANCE_REL", "DatasetWriter", "same_pose"]

#: relative disparity range in 3 x 3 pixels beyond which a generated frame's depth is not written (an edge)
EDGE_DISPARITY = 0.05
#: two cameras whose optical axes and up directions agree within this many degrees...
POSE_TOLERANCE_DEG = 0.1
#: ...and whose centres lie within this share of the scene depth share a pose
POSE_TOLERANCE_REL = 1e-3
SUBFOLDERS = ("images", "depths", "masks")


def same_pose(a: np.ndarray, b: np.ndarray, scene_depth: float) -> bool:
    """Whether two (4, 4) camera-to-world poses (either camera-axis convention, both the same) coincide."""
    if np.linalg.norm(a[:3, 3] - b[:3, 3]) > POSE_TOLERANCE_REL * scene_depth:
        return False
    cos = (np.trace(a[:3, :3].T @ b[:3, :3]) - 1.0) / 2.0
    return math.degrees(math.acos(min(1.0, max(-1.0, cos)))) <= POSE_TOLERANCE_DEG


def _uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    return (image.permute(1, 2, 0).clamp(0, 1) * 255.0 + 0.5).byte().cpu().numpy()


def _mask_png(path: Path, mask: np.ndarray) -> None:
    from PIL import Image

    from worldstereo.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(np.where(mask, 255, 0).astype(np.uint8), mode="L").save(tmp, format="PNG", compress_level=PNG_LEVEL)


@dataclass
class DatasetWriter:
    """Writes frames into ``folder`` (``D/world``) and keeps their ``transforms.json`` items.

    Attributes:
        folder: the dataset folder.
        scene_depth: the world's scene depth (scales the pose tolerance).
        frames: ``transforms.json`` items written so far, each with its ``trajectory``.
        skipped: frames not written because their pose repeats an earlier one: ``{trajectory, frame, same_as}``.
        cloud: the points and colours of ``pointcloud.ply`` once :meth:`finish` wrote it.
    """

    folder: Path
    scene_depth: float
    frames: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    cloud: tuple[torch.Tensor, torch.Tensor] | None = None

    def __post_init__(self) -> None:
        for sub in SUBFOLDERS:
            (self.folder / sub).mkdir(parents=True, exist_ok=True)

    def _repeats(self, c2w: np.ndarray) -> str | None:
        for f in self.frames:
            if same_pose(c2w, np.asarray(f["transform_matrix"]), self.scene_depth):
                return f["file_path"]
        return None

    def _write_files(self, stem: str, image: np.ndarray, depth: torch.Tensor, mask: np.ndarray) -> None:
        write_image_png(self.folder / "images" / f"{stem}.png", image)
        write_depth_png(self.folder / "depths" / f"{stem}.png", depth)
        _mask_png(self.folder / "masks" / f"{stem}.png", mask)

    def _write(self, stem: str, trajectory: str, image: np.ndarray, depth: torch.Tensor, mask: np.ndarray, camera) -> None:
        self._write_files(stem, image, depth, mask)
        entry = frame_entry(f"images/{stem}.png", f"depths/{stem}.png", camera)
        self.frames.append(entry | {"mask_path": f"masks/{stem}.png", "trajectory": trajectory})

    def write_inputs(self, views: InputViews) -> int:
        """The input views, at their own size and cameras (every pixel real: masks all 255); returns how many."""
        for i, name in enumerate(views.names):
            image = views.images[i].cpu().numpy()
            self._write(name, "input", image, views.depths[i], np.ones(image.shape[:2], bool), views.cameras[i])
        return len(views.names)

    def write_trajectory(self, name: str, observations: list[FrameObservation]) -> int:
        """A trajectory's frames (``NAME_NNN``, ``NNN`` its frame index), but those repeating a pose; returns how
        many were written."""
        return self.start_trajectory(name, observations)()

    def start_trajectory(self, name: str, observations: list[FrameObservation]) -> Callable[[], int]:
        """:meth:`write_trajectory` with the files written on a background thread (PNG encoding lets the caller's
        work go on: a world folds the trajectory meanwhile); returns ``wait``, which waits for the files and gives
        how many frames were written (it raises what writing raised). :attr:`frames` holds the entries at once."""
        from concurrent.futures import ThreadPoolExecutor

        jobs = []
        for i, obs in enumerate(observations):
            entry = frame_entry("", "", obs.camera)
            same = self._repeats(np.asarray(entry["transform_matrix"]))
            if same is not None:
                self.skipped.append({"trajectory": name, "frame": i, "same_as": same})
                continue
            stem = f"{name}_{i:03d}"
            jobs.append((stem, obs.frame))
            self.frames.append(frame_entry(f"images/{stem}.png", f"depths/{stem}.png", obs.camera)
                               | {"mask_path": f"masks/{stem}.png", "trajectory": name})

        def write_all() -> None:
            for stem, f in jobs:
                depth = f.supervised_depth()
                edges = disparity_edges(f.depth.unsqueeze(0), EDGE_DISPARITY)[0]
                self._write_files(stem, _uint8(f.image), torch.where(edges, torch.zeros_like(depth), depth),
                                  f.trained_mask()[0].cpu().numpy())

        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dataset-writer")
        future = pool.submit(write_all)
        pool.shutdown(wait=False)

        def wait() -> int:
            future.result()
            return len(jobs)

        return wait

    def keep_only(self, trajectories: set[str]) -> None:
        """Forget the entries of trajectories not in ``trajectories`` (the input views stay): a run stopped before
        it recorded a trajectory as finished generates it again."""
        keep = trajectories | {"input"}
        self.frames[:] = [f for f in self.frames if f["trajectory"] in keep]
        self.skipped[:] = [f for f in self.skipped if f["trajectory"] in keep]

    def finish(self, points: torch.Tensor, colors: torch.Tensor, merge_threshold: float) -> tuple[int, float]:
        """``pointcloud.ply`` (voxel-downsampled to its budget) and ``transforms.json``; returns (points, voxel side).
        The cloud written is kept as :attr:`cloud` ((M, 3) points, (M, 3) colours in [0, 1])."""
        ply, pts, cols, voxel = write_point_cloud_budget(self.folder / "pointcloud.ply", points.detach().cpu(),
                                                         colors.detach().cpu(), start_voxel=merge_threshold)
        self.cloud = (pts, cols)
        n = int(pts.shape[0])
        write_transforms(self.folder / "transforms.json",
                         [{k: v for k, v in f.items() if k != "trajectory"} for f in self.frames], ply.name)
        return n, voxel
