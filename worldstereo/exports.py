"""Writing a run's outputs: frames, depth maps, video, cameras, point cloud and memory snapshot.

Layout of one path's outputs (:class:`RunWriter`)::

    frames/000.png     the generated frames, 8-bit RGB
    depth/000.png      their depth (camera z), single-channel 16-bit PNG in millimetres of scene units
                       (value = round(1000 * z); 0 = unknown; depth beyond 65.535 is written as 0 = unknown).
                       This is the format the ``file`` depth backend reads (``load_depth_map``).
    video.mp4          H.264, yuv420p, ``fps`` frames per second
    cameras.json       official camera.json, renders kind (world-to-camera OpenCV extrinsics, pixel
                       intrinsics of the working size, ``width``/``height``)

The memory (:func:`write_memory`), shared by all paths of an exploration::

    pointcloud.ply, pointcloud.glb   the Global-Geometric Memory's points and colours
    snapshot/                        ``WorldStereo.save`` (state.safetensors + state.json), loadable with
                                     ``WorldStereo.load``

Every file is written atomically (:mod:`worldstereo.atomic`): a failed or interrupted run never leaves a
half-written file under a final name. The video is streamed into a hidden temporary file beside
``video.mp4`` and moved onto it only when the path is complete; frames and depth maps written before an
interruption are complete files. The snapshot directory is built under a temporary name and renamed.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from worldstereo.atomic import atomic_path
from worldstereo.camera import CameraParameters
from worldstereo.formats import write_camera_json, write_point_cloud

if TYPE_CHECKING:
    from worldstereo.model import WorldStereo
    from worldstereo.pipeline import Step

__all__ = [
    "DEPTH_PNG_SCALE",
    "MemoryOutputs",
    "RunOutputs",
    "RunWriter",
    "depth_to_png16",
    "save_snapshot",
    "write_depth_png",
    "write_image_png",
    "write_memory",
    "write_video",
]

DEPTH_PNG_SCALE = 1000.0
"""PNG counts per scene unit in depth PNGs (millimetres when scene units are metres)."""
PNG_LEVEL = 1
"""zlib level of the PNGs written: twice as fast as PIL's default 6 for some 5% more bytes (frames, depths)."""


# ------------------------------------------------------------------------------------------------ single files
def _as_numpy(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def write_image_png(path: str | os.PathLike, image: Any) -> Path:
    """Write an (H, W, 3) uint8 RGB image as PNG, atomically."""
    arr = _as_numpy(image)
    if arr.ndim != 3 or arr.shape[-1] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"image must be (H, W, 3) uint8, got {arr.shape} {arr.dtype}")
    with atomic_path(path) as tmp:
        Image.fromarray(np.ascontiguousarray(arr), mode="RGB").save(tmp, format="PNG", compress_level=PNG_LEVEL)
    return Path(path)


def depth_to_png16(depth: Any, scale: float = DEPTH_PNG_SCALE) -> np.ndarray:
    """Depth (H, W) or (1, H, W) in scene units -> (H, W) uint16 counts ``round(scale * z)``.

    0 and non-finite values stay 0 (unknown); depth beyond the 16-bit range becomes 0 too (unknown
    rather than a wrong clipped value).
    """
    d = _as_numpy(depth).astype(np.float64)
    if d.ndim == 3 and d.shape[0] == 1:
        d = d[0]
    if d.ndim != 2:
        raise ValueError(f"depth must be (H, W) or (1, H, W), got {d.shape}")
    counts = np.round(np.where(np.isfinite(d), d, 0.0) * scale)
    counts[(counts < 0) | (counts > 65535)] = 0
    return counts.astype(np.uint16)


def write_depth_png(path: str | os.PathLike, depth: Any, scale: float = DEPTH_PNG_SCALE) -> Path:
    """Write depth (H, W) or (1, H, W) in scene units as a 16-bit PNG (see :func:`depth_to_png16`), atomically."""
    counts = depth_to_png16(depth, scale)
    with atomic_path(path) as tmp:
        Image.fromarray(counts).save(tmp, format="PNG", compress_level=PNG_LEVEL)  # uint16 -> mode I;16
    return Path(path)


def write_video(path: str | os.PathLike, frames: Any, fps: float = 8.0) -> Path:
    """Frames (H, W, 3) uint8 -> H.264 yuv420p mp4, atomically (odd sizes are padded by one pixel)."""
    import imageio.v2 as imageio

    frames = list(frames)
    if not frames:
        raise ValueError("frames must not be empty")
    out = Path(path)
    with atomic_path(out) as tmp:
        writer = imageio.get_writer(str(tmp), fps=fps, codec="libx264", quality=7, macro_block_size=1,
                                    ffmpeg_log_level="error", output_params=["-pix_fmt", "yuv420p"])
        try:
            for f in frames:
                f = _as_numpy(f)
                h, w = f.shape[:2]
                writer.append_data(np.pad(f, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge"))
        finally:
            writer.close()
    return out


def save_snapshot(model: WorldStereo, directory: str | os.PathLike) -> Path:
    """``model.save`` into ``directory`` as one unit: built under a temporary name, then renamed.

    An existing snapshot at ``directory`` is replaced only once the new one is complete.
    """
    final = Path(directory)
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    old: Path | None = None
    try:
        model.save(work)
        os.chmod(work, 0o755)
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".old", dir=final.parent))
            os.replace(final, old / "snapshot")
        os.replace(work, final)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        if old is not None and (old / "snapshot").exists() and not final.exists():
            os.replace(old / "snapshot", final)  # put the previous snapshot back
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass(frozen=True)
class MemoryOutputs:
    """Files written by :func:`write_memory`."""

    ply: Path
    glb: Path
    snapshot: Path
    num_points: int


def write_memory(out_dir: str | os.PathLike, model: WorldStereo, snapshot: bool = True) -> MemoryOutputs:
    """Write the GGM as ``pointcloud.ply`` / ``pointcloud.glb`` and the whole state as ``snapshot/``."""
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    pts = model.ggm.point_cloud.detach().float().cpu()
    cols = model.ggm.point_colors.detach().float().cpu().clamp(0, 1)
    ply = write_point_cloud(d / "pointcloud.ply", pts, cols)
    glb = write_point_cloud(d / "pointcloud.glb", pts, cols)
    snap = save_snapshot(model, d / "snapshot") if snapshot else d / "snapshot"
    return MemoryOutputs(ply, glb, snap, int(pts.shape[0]))


# ------------------------------------------------------------------------------------------------ one path
@dataclass
class RunOutputs:
    """Files of one path written by :class:`RunWriter` (``video``/``cameras`` are None until finished)."""

    directory: Path
    frames: list[Path] = field(default_factory=list)
    depths: list[Path] = field(default_factory=list)
    video: Path | None = None
    cameras: Path | None = None

    @property
    def num_frames(self) -> int:
        return len(self.frames)


class RunWriter:
    """Writes the Steps of one path into ``out_dir`` as they arrive (layout in the module docstring).

    Use as a context manager: leaving the block normally calls :meth:`finish` (video and cameras.json
    appear), leaving it by an exception (including ``KeyboardInterrupt``) calls :meth:`abort` (the
    partial video is deleted; frames already written stay, each complete)::

        with RunWriter(out / "eloop") as writer:
            for step in model.generate(cams):
                writer.add(step)
        writer.outputs.video  # Path to video.mp4

    Args:
        out_dir: the path's output directory (created).
        fps: video frame rate.
        frames, depth, video: which outputs to write.
        clear: first delete what an earlier run left here (``frames/*.png``, ``depth/*.png``, ``video.mp4``,
            ``cameras.json``), so the directory never mixes two runs.
    """

    def __init__(
        self,
        out_dir: str | os.PathLike,
        fps: float = 8.0,
        frames: bool = True,
        depth: bool = True,
        video: bool = True,
        clear: bool = True,
    ) -> None:
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps}")
        self.directory = Path(out_dir)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.fps = float(fps)
        self._want_frames, self._want_depth, self._want_video = frames, depth, video
        if clear:
            for sub in ("frames", "depth"):
                for f in (self.directory / sub).glob("[0-9]*.png"):
                    f.unlink()
            for name in ("video.mp4", "cameras.json"):
                (self.directory / name).unlink(missing_ok=True)
        self.outputs = RunOutputs(self.directory)
        self._cameras: list[CameraParameters] = []
        self._writer: Any = None
        self._video_tmp: Path | None = None
        self._size: tuple[int, int] | None = None
        self._closed = False

    # --------------------------------------------------------------- streaming
    def add(self, step: Step, total: int | None = None) -> None:
        """Write one step's frame and depth, append it to the video and remember its camera."""
        if self._closed:
            raise RuntimeError("RunWriter is closed")
        image = step.image_uint8()
        h, w = image.shape[:2]
        if self._size is None:
            self._size = (w, h)
        elif self._size != (w, h):
            raise ValueError(f"step image size {w}x{h} differs from the path's {self._size[0]}x{self._size[1]}")
        i = len(self._cameras)
        digits = max(3, len(str(max((total or step.num_frames) - 1, i))))
        name = f"{i:0{digits}d}.png"
        if self._want_frames:
            self.outputs.frames.append(write_image_png(self.directory / "frames" / name, image))
        if self._want_depth:
            self.outputs.depths.append(write_depth_png(self.directory / "depth" / name, step.depth))
        if self._want_video:
            self._append_video(image)
        self._cameras.append(step.camera.to(device="cpu"))

    def _append_video(self, image: np.ndarray) -> None:
        if self._writer is None:
            import imageio.v2 as imageio

            fd, tmp = tempfile.mkstemp(prefix=".video.", suffix=".tmp.mp4", dir=self.directory)
            os.close(fd)
            self._video_tmp = Path(tmp)
            self._writer = imageio.get_writer(
                tmp, format="FFMPEG", fps=self.fps, codec="libx264", quality=7, macro_block_size=1,
                ffmpeg_log_level="error", output_params=["-pix_fmt", "yuv420p", "-threads", "1"],
            )
        h, w = image.shape[:2]
        if h % 2 or w % 2:  # yuv420p needs even sizes
            image = np.pad(image, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        self._writer.append_data(image)

    # --------------------------------------------------------------- closing
    def finish(self) -> RunOutputs:
        """Complete the video and write ``cameras.json``; returns the outputs."""
        if self._closed:
            return self.outputs
        try:
            if self._writer is not None:
                self._writer.close()
                self._writer = None
                os.chmod(self._video_tmp, 0o644)
                os.replace(self._video_tmp, self.directory / "video.mp4")
                self._video_tmp = None
                self.outputs.video = self.directory / "video.mp4"
            if self._cameras:
                cams = CameraParameters.cat(self._cameras)
                self.outputs.cameras = write_camera_json(self.directory / "cameras.json", cams)
        except BaseException:
            self.abort()
            raise
        self._closed = True
        return self.outputs

    def abort(self) -> None:
        """Stop without completing: the temporary video is removed; nothing new appears under a final name."""
        if self._writer is not None:
            try:
                self._writer.close()
            except Exception:  # the file is deleted anyway
                pass
            self._writer = None
        if self._video_tmp is not None:
            self._video_tmp.unlink(missing_ok=True)
            self._video_tmp = None
        self._closed = True

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.abort()
