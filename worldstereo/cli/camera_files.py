"""``--camera`` files: an official ``camera.json`` (either kind) or a nerfstudio ``camera_path.json``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from worldstereo import formats
from worldstereo.camera import CameraParameters
from worldstereo.cli.common import CliError
from worldstereo.limits import MAX_CAMERA_FILE_BYTES

__all__ = ["CameraFile", "read_camera_file"]


@dataclass(frozen=True)
class CameraFile:
    """Cameras read from a ``--camera`` file.

    Attributes:
        cameras: N cameras (world-to-camera, OpenCV axes; float64), of size ``cameras.width x height``.
        kind: ``"renders"``, ``"images"`` (official camera.json kinds) or ``"nerfstudio"``.
    """

    cameras: CameraParameters
    kind: str


def read_camera_file(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> CameraFile:
    """Read an official ``camera.json`` (either kind) or a nerfstudio ``camera_path.json``, told apart by keys.

    Args:
        image_size: (width, height) of the input image. The images kind (no size keys, intrinsics in pixels
            of the input image) takes it as the cameras' size; a nerfstudio path keeps its vertical field of
            view at that size (square pixels). The renders kind keeps its own ``width``/``height``.
    """
    p = Path(path)
    if not p.is_file():
        raise CliError(f"camera file not found: {str(p)!r}")
    try:
        data = formats.read_json_file(p, MAX_CAMERA_FILE_BYTES)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    if isinstance(data, dict) and "camera_path" in data:
        cams = formats.read_nerfstudio_path(p).cameras
        if image_size is not None and tuple(image_size) != (cams.width, cams.height):
            # nerfstudio gives a vertical fov: keep it for the input image's size, square pixels
            cams = CameraParameters.from_fov(cams.fov_y, *image_size, extrinsics=cams.extrinsics)
        return CameraFile(cams, "nerfstudio")
    if isinstance(data, dict) and "extrinsic" in data:
        cams, info = formats.read_camera_json(p)
        if info.kind == "images" and image_size is not None:
            cams = CameraParameters(cams.intrinsics, cams.extrinsics, *image_size)
        return CameraFile(cams, info.kind)
    raise CliError(
        f"{p}: not a camera file: expected an official camera.json ('extrinsic', 'intrinsic') "
        "or a nerfstudio camera_path.json ('camera_path')"
    )
