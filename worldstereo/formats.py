"""Files: the official ``camera.json`` (both kinds), example folders, nerfstudio ``camera_path.json``, point clouds.

* Official ``camera.json`` (FuchengSu/WorldStereo): ``extrinsic`` (N, 4, 4) world-to-camera in OpenCV axes and
  ``intrinsic`` (N, 3, 3) in pixels. The **images** kind (81 poses) adds ``motion_list`` and has no size: its
  intrinsics are in pixels of the sibling ``image.png``. The **renders** kind (21 poses, ``renders/traj_*/``) adds
  ``width``/``height`` (and sometimes ``type``, ``id``...). Reading keeps float64 and every extra key, so
  write -> read round-trips exactly (floats are written with ``repr``).
* nerfstudio ``camera_path.json``: ``camera_to_world`` and keyframe ``matrix`` are 4x4 **camera-to-world** matrices
  flattened **row-major** with **OpenGL** camera axes (x right, y up, z backward), ``fov`` the **vertical** field of
  view in degrees; as written by nerfstudio's viser render panel (``pose.as_matrix().flatten()``) and read by
  ``nerfstudio.cameras.camera_paths.get_path_from_json`` (``view(4, 4)``). The legacy three.js viewer wrote keyframe
  matrices column-major; the reader detects that case (a last row that is not ``0 0 0 1`` but a last column that is).
* Point clouds: PLY or GLB through trimesh, chosen by suffix.

Every write goes to a temporary file in the target directory, then ``os.replace``; on error the temporary file is
removed and nothing appears under the final name. Every reader raises ``ValueError`` naming the file and the field.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldstereo.atomic import atomic_path
from worldstereo.camera import CameraParameters, check_rotation, opencv_to_opengl, opengl_to_opencv

__all__ = [
    "CameraFileInfo",
    "ExampleFolder",
    "NamedCameras",
    "NerfstudioPath",
    "PointCloudData",
    "RECONSTRUCTION_ORDER",
    "read_camera_json",
    "read_example_folder",
    "read_nerfstudio_path",
    "read_point_cloud",
    "write_camera_json",
    "write_nerfstudio_path",
    "write_point_cloud",
    "read_json_file",
]

# Order in which the reference explores the four official reconstruction paths (src/data_utils.recon_sort_trajs).
RECONSTRUCTION_ORDER = ("eloop", "up", "right", "left")

_CORE_KEYS = ("motion_list", "extrinsic", "intrinsic", "width", "height")


# ------------------------------------------------------------------------------------------------ atomic writes
def _atomic_write(path: str | os.PathLike, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` on a temporary file beside ``path``, then move it onto ``path`` (see :mod:`worldstereo.atomic`)."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


def _write_json(path: str | os.PathLike, data: Any) -> Path:
    text = json.dumps(data, indent=2, allow_nan=False)  # json writes floats with repr: exact round trip
    return _atomic_write(path, lambda tmp: tmp.write_text(text + "\n", encoding="utf-8"))


# ---------------------------------------------------------------------------------------------- reader helpers
def read_json_file(path: str | os.PathLike, max_bytes: int, name: str | None = None) -> Any:
    """Parse a JSON file of at most ``max_bytes``; every problem is one ``ValueError`` naming the file
    (``name``, default its path): too large, unreadable, not UTF-8 text, broken JSON."""
    from worldstereo.limits import check_file_size

    p = Path(path)
    label = name or str(p)
    check_file_size(p, max_bytes, p.name)
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ValueError(f"{label}: not a text JSON file") from None
    except OSError as exc:
        raise ValueError(f"{label}: cannot read file: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"{label}: broken JSON: {exc}") from None


def _load_json(path: Path) -> Any:
    from worldstereo.limits import MAX_CAMERA_FILE_BYTES

    return read_json_file(path, MAX_CAMERA_FILE_BYTES)


def _check_pose_count(path: Path, n: int) -> None:
    from worldstereo.limits import MAX_CAMERA_POSES

    if n > MAX_CAMERA_POSES:
        raise ValueError(f"{path}: holds {n} poses, more than the limit of {MAX_CAMERA_POSES} per camera file")


def _array(path: Path, data: dict, key: str, shape_tail: tuple[int, ...]) -> np.ndarray:
    if key not in data:
        raise ValueError(f"{path}: missing key {key!r}")
    try:
        arr = np.asarray(data[key], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: field {key!r} must be a nested list of numbers of shape (N, {shape_tail})") from None
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail or arr.shape[0] == 0:
        raise ValueError(f"{path}: field {key!r} must have shape (N, {', '.join(map(str, shape_tail))}), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: field {key!r} contains NaN or inf values")
    return arr


def _positive_int(path: Path, data: dict, key: str) -> int:
    v = data.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not float(v).is_integer() or v <= 0:
        raise ValueError(f"{path}: field {key!r} must be a positive integer, got {v!r}")
    return int(v)


def _cameras(path: Path, K: np.ndarray, E: np.ndarray, width: int, height: int, field_e: str) -> CameraParameters:
    try:
        check_rotation(field_e, torch.from_numpy(E[:, :3, :3]))
        return CameraParameters(torch.from_numpy(K), torch.from_numpy(E), width, height)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


# ------------------------------------------------------------------------------------------- official camera.json
@dataclass
class CameraFileInfo:
    """What :func:`read_camera_json` found besides the cameras, enough to write the file back.

    Attributes:
        kind: ``"images"`` (``motion_list``, no size keys) or ``"renders"`` (``width``/``height`` keys).
        motion_list: the official motion strings (images kind), else ``None``.
        extra: every other top-level key, values untouched (e.g. ``type``, ``id``).
        source: the file read, ``None`` for info made by hand.
        size_source: where width/height came from: ``"file"`` (keys), ``"image"`` (sibling ``image.png``),
            ``"principal_point"`` (``2 cx, 2 cy``, a guess), or ``"given"``.
        key_order: top-level key order of the source file, kept on writing.
    """

    kind: str = "renders"
    motion_list: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: Path | None = None
    size_source: str = "given"
    key_order: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in ("images", "renders"):
            raise ValueError(f"kind must be 'images' or 'renders', got {self.kind!r}")


def _image_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.size
    except (OSError, ValueError):
        return None


def read_camera_json(path: str | os.PathLike) -> tuple[CameraParameters, CameraFileInfo]:
    """Read an official ``camera.json`` of either kind.

    Returns:
        cameras: N cameras, float64 (world-to-camera, OpenCV axes; intrinsics in pixels of the image size).
        info: :class:`CameraFileInfo`; for the images kind the size comes from the sibling ``image.png`` when
            present, else from ``2 cx, 2 cy`` (``info.size_source`` says which).
    Raises:
        ValueError naming the file and the field: broken JSON, missing keys, wrong shapes, NaN/inf, a
        non-rotation, counts that differ, bad sizes, a ``motion_list`` that is not a list of strings.
    """
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: top level must be a JSON object with 'extrinsic' and 'intrinsic'")
    E = _array(p, data, "extrinsic", (4, 4))
    K = _array(p, data, "intrinsic", (3, 3))
    if E.shape[0] != K.shape[0]:
        raise ValueError(f"{p}: field 'extrinsic' holds {E.shape[0]} poses but 'intrinsic' holds {K.shape[0]}")
    _check_pose_count(p, E.shape[0])
    motion = data.get("motion_list")
    if motion is not None and (not isinstance(motion, list) or not all(isinstance(m, str) for m in motion)):
        raise ValueError(f"{p}: field 'motion_list' must be a list of strings")
    has_w, has_h = "width" in data, "height" in data
    if has_w != has_h:
        raise ValueError(f"{p}: field {'height' if has_w else 'width'!r} missing (width and height go together)")
    if has_w:
        kind, size_source = "renders", "file"
        width, height = _positive_int(p, data, "width"), _positive_int(p, data, "height")
    else:
        kind = "images"
        size = _image_size(p.parent / "image.png")
        if size is not None:
            (width, height), size_source = size, "image"
        else:
            width, height = round(2 * K[0, 0, 2]), round(2 * K[0, 1, 2])
            size_source = "principal_point"
            if width <= 0 or height <= 0:
                raise ValueError(f"{p}: field 'intrinsic' has a non-positive principal point; size unknown")
    cams = _cameras(p, K, E, width, height, "extrinsic")
    extra = {k: v for k, v in data.items() if k not in _CORE_KEYS}
    info = CameraFileInfo(kind, list(motion) if motion is not None else None, extra, p, size_source, tuple(data))
    return cams, info


def write_camera_json(
    path: str | os.PathLike, cameras: CameraParameters, info: CameraFileInfo | None = None
) -> Path:
    """Write cameras as an official ``camera.json`` (atomically).

    Args:
        cameras: N cameras; numbers are written from float64 with ``repr`` (exact for float64 input).
        info: as returned by :func:`read_camera_json` (kind, ``motion_list``, extra keys and key order are kept),
            or ``None`` for a new renders-kind file with ``width``/``height``.
    """
    if not isinstance(cameras, CameraParameters):
        raise ValueError(f"cameras must be CameraParameters, got {type(cameras).__name__}")
    info = info or CameraFileInfo()
    core: dict[str, Any] = {
        "extrinsic": cameras.extrinsics.detach().cpu().double().numpy().tolist(),
        "intrinsic": cameras.intrinsics.detach().cpu().double().numpy().tolist(),
    }
    if info.kind == "images":
        if info.motion_list is not None:
            core["motion_list"] = list(info.motion_list)
    else:
        core["width"], core["height"] = int(cameras.width), int(cameras.height)
    clash = sorted(set(info.extra) & set(_CORE_KEYS))
    if clash:
        raise ValueError(f"info.extra must not hold the core keys {clash}")
    merged = {**core, **info.extra}
    order = [k for k in info.key_order if k in merged]
    order += [k for k in ("motion_list", "extrinsic", "intrinsic", "width", "height") if k in merged and k not in order]
    order += [k for k in merged if k not in order]
    return _write_json(path, {k: merged[k] for k in order})


# ---------------------------------------------------------------------------------------------- example folders
@dataclass(frozen=True)
class NamedCameras:
    """One named camera path: ``name`` (``eloop``, ``up``... or ``camera``), its cameras and file info."""

    name: str
    cameras: CameraParameters
    info: CameraFileInfo


@dataclass(frozen=True)
class ExampleFolder:
    """An official example folder.

    Attributes:
        root: the folder.
        image: (H, W, 3) uint8 RGB of ``image.png``.
        prompt: the parsed ``prompt.json`` (empty dict if absent).
        paths: camera paths in the reference order (renders kind: eloop, up, right, left, then any others by
            name; images kind: one path named ``camera``).
    """

    root: Path
    image: np.ndarray
    prompt: dict[str, Any]
    paths: list[NamedCameras]

    def image_tensor(self) -> torch.Tensor:
        """(1, 3, H, W) float32 image in [0, 1]."""
        return torch.from_numpy(self.image).permute(2, 0, 1).unsqueeze(0).float() / 255.0

    def path(self, name: str) -> NamedCameras:
        for p in self.paths:
            if p.name == name:
                return p
        raise ValueError(f"no path named {name!r}; have {[p.name for p in self.paths]}")


def read_example_folder(root: str | os.PathLike) -> ExampleFolder:
    """Load an official example folder: ``image.png``, ``prompt.json`` and ``renders/traj_*/camera.json`` (or a
    single ``camera.json`` of the images kind)."""
    from PIL import Image

    r = Path(root)
    img_path = r / "image.png"
    if not img_path.is_file():
        raise ValueError(f"{r}: missing image.png")
    try:
        with Image.open(img_path) as im:
            image = np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except OSError as exc:
        raise ValueError(f"{img_path}: cannot read image: {exc}") from None
    prompt: dict[str, Any] = {}
    if (r / "prompt.json").is_file():
        loaded = _load_json(r / "prompt.json")
        if not isinstance(loaded, dict):
            raise ValueError(f"{r / 'prompt.json'}: top level must be a JSON object")
        prompt = loaded
    paths: list[NamedCameras] = []
    traj_dirs = sorted(d for d in (r / "renders").glob("traj_*") if (d / "camera.json").is_file())
    rank = {n: i for i, n in enumerate(RECONSTRUCTION_ORDER)}
    traj_dirs.sort(key=lambda d: (rank.get(d.name[5:], len(rank)), d.name))
    for d in traj_dirs:
        cams, info = read_camera_json(d / "camera.json")
        paths.append(NamedCameras(d.name[5:], cams, info))
    if (r / "camera.json").is_file():
        cams, info = read_camera_json(r / "camera.json")
        paths.append(NamedCameras("camera", cams, info))
    if not paths:
        raise ValueError(f"{r}: no camera.json and no renders/traj_*/camera.json")
    return ExampleFolder(r, image, prompt, paths)


# ---------------------------------------------------------------------------------------- nerfstudio camera paths
@dataclass(frozen=True)
class NerfstudioPath:
    """A nerfstudio ``camera_path.json``.

    Attributes:
        cameras: the sampled ``camera_path`` entries as cameras (OpenCV world-to-camera, float64).
        keyframes: key poses as cameras (same size), or ``None`` if the file has none.
        fps: frames per second; seconds: duration.
        is_cycle: closed path; smoothness: spline tension.
        extra: other top-level keys, kept on writing.
    """

    cameras: CameraParameters
    keyframes: CameraParameters | None = None
    fps: float = 30.0
    seconds: float | None = None
    is_cycle: bool = False
    smoothness: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _fov_deg(cameras: CameraParameters) -> list[float]:
    return [float(math.degrees(f)) for f in cameras.fov_y.detach().cpu().double()]


def _gl_rows(cameras: CameraParameters) -> list[list[float]]:
    T = opencv_to_opengl(cameras.c2w.detach().cpu().double())
    return [row.reshape(-1).tolist() for row in T.numpy()]


def write_nerfstudio_path(path: str | os.PathLike, ns: NerfstudioPath) -> Path:
    """Write a nerfstudio ``camera_path.json`` (atomically)."""
    cams = ns.cameras
    aspect = cams.width / cams.height
    data: dict[str, Any] = dict(ns.extra)
    if ns.keyframes is not None:
        if (ns.keyframes.width, ns.keyframes.height) != (cams.width, cams.height):
            raise ValueError("keyframes must have the size of cameras")
        data["keyframes"] = [
            {"matrix": m, "fov": f, "aspect": aspect}
            for m, f in zip(_gl_rows(ns.keyframes), _fov_deg(ns.keyframes), strict=True)
        ]
    seconds = ns.seconds if ns.seconds is not None else len(cams) / ns.fps
    data.update(
        camera_type="perspective",
        render_height=int(cams.height),
        render_width=int(cams.width),
        fps=ns.fps,
        seconds=seconds,
        is_cycle=bool(ns.is_cycle),
        smoothness_value=ns.smoothness,
        camera_path=[
            {"camera_to_world": m, "fov": f, "aspect": aspect}
            for m, f in zip(_gl_rows(cams), _fov_deg(cams), strict=True)
        ],
    )
    return _write_json(path, data)


def _ns_matrix(p: Path, where: str, value: Any, legacy_column_major: bool) -> np.ndarray:
    try:
        m = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{p}: field {where} must be 16 numbers") from None
    if m.size != 16:
        raise ValueError(f"{p}: field {where} must hold 16 numbers (a flattened 4x4), got {m.size}")
    if not np.isfinite(m).all():
        raise ValueError(f"{p}: field {where} contains NaN or inf values")
    m = m.reshape(4, 4)
    last = np.array([0.0, 0.0, 0.0, 1.0])
    if legacy_column_major and not np.allclose(m[3], last, atol=1e-6) and np.allclose(m[:, 3], last, atol=1e-6):
        m = m.T
    if not np.allclose(m[3], last, atol=1e-6):
        raise ValueError(f"{p}: field {where} must have last row [0, 0, 0, 1] (row-major camera-to-world)")
    try:
        check_rotation(where, torch.from_numpy(m[:3, :3]))
    except ValueError as exc:
        raise ValueError(f"{p}: {exc}") from None
    return m


def _ns_cameras(p: Path, entries: Any, key: str, mat_key: str, width: int, height: int, legacy: bool):
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{p}: field {key!r} must be a non-empty list")
    _check_pose_count(p, len(entries))
    mats, fovs = [], []
    for i, e in enumerate(entries):
        if not isinstance(e, dict) or mat_key not in e or "fov" not in e:
            raise ValueError(f"{p}: field {key}[{i}] must be an object with {mat_key!r} and 'fov'")
        mats.append(_ns_matrix(p, f"{key}[{i}].{mat_key}", e[mat_key], legacy))
        fov = e["fov"]
        if isinstance(fov, bool) or not isinstance(fov, (int, float)) or not 0 < fov < 180:
            raise ValueError(f"{p}: field {key}[{i}].fov must be a vertical fov in (0, 180) degrees, got {fov!r}")
        fovs.append(float(fov))
    c2w_cv = opengl_to_opencv(torch.from_numpy(np.stack(mats)))
    f = 0.5 * height / np.tan(np.radians(np.array(fovs)) / 2.0)
    K = np.zeros((len(f), 3, 3))
    K[:, 0, 0] = K[:, 1, 1] = f
    K[:, 0, 2], K[:, 1, 2], K[:, 2, 2] = width / 2.0, height / 2.0, 1.0
    try:
        return CameraParameters.from_c2w(torch.from_numpy(K), c2w_cv, width, height)
    except ValueError as exc:
        raise ValueError(f"{p}: field {key!r}: {exc}") from None


def read_nerfstudio_path(path: str | os.PathLike) -> NerfstudioPath:
    """Read a nerfstudio ``camera_path.json`` (perspective cameras)."""
    p = Path(path)
    data = _load_json(p)
    if not isinstance(data, dict):
        raise ValueError(f"{p}: top level must be a JSON object")
    for key in ("render_width", "render_height", "camera_path"):
        if key not in data:
            raise ValueError(f"{p}: missing key {key!r}")
    width, height = _positive_int(p, data, "render_width"), _positive_int(p, data, "render_height")
    ctype = str(data.get("camera_type", "perspective")).lower()
    if ctype != "perspective":
        raise ValueError(f"{p}: field 'camera_type' is {ctype!r}; only 'perspective' is supported")
    cams = _ns_cameras(p, data["camera_path"], "camera_path", "camera_to_world", width, height, legacy=False)
    keys = None
    if data.get("keyframes"):
        keys = _ns_cameras(p, data["keyframes"], "keyframes", "matrix", width, height, legacy=True)
    fps = data.get("fps", 30.0)
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not fps > 0:
        raise ValueError(f"{p}: field 'fps' must be a positive number, got {fps!r}")
    seconds = data.get("seconds")
    if seconds is not None and (isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0):
        raise ValueError(f"{p}: field 'seconds' must be a non-negative number, got {seconds!r}")
    known = {"keyframes", "camera_type", "render_height", "render_width", "fps", "seconds", "is_cycle",
             "smoothness_value", "camera_path"}
    extra = {k: v for k, v in data.items() if k not in known}
    return NerfstudioPath(cams, keys, float(fps), None if seconds is None else float(seconds),
                          bool(data.get("is_cycle", False)), float(data.get("smoothness_value", 0.0)), extra)


# ------------------------------------------------------------------------------------------------- point clouds
_POINT_FORMATS = (".ply", ".glb")


def _colors_uint8(colors: Any, n: int) -> np.ndarray:
    c = colors.detach().cpu().numpy() if isinstance(colors, torch.Tensor) else np.asarray(colors)
    if c.shape != (n, 3):
        raise ValueError(f"colors must have shape ({n}, 3), got {c.shape}")
    if c.dtype == np.uint8:
        return c
    c = c.astype(np.float64)
    if not np.isfinite(c).all():
        raise ValueError("colors contains NaN or inf values")
    if c.min() < 0.0 or c.max() > 1.0:
        raise ValueError("float colors must lie in [0, 1] (or pass uint8)")
    return np.round(c * 255.0).astype(np.uint8)


def write_point_cloud(path: str | os.PathLike, points: Any, colors: Any | None = None) -> Path:
    """Write points (N, 3) and optional colours (N, 3; float in [0, 1] or uint8) as ``.ply`` or ``.glb``."""
    import trimesh

    p = Path(path)
    suffix = p.suffix.lower()
    if suffix not in _POINT_FORMATS:
        raise ValueError(f"path must end in one of {_POINT_FORMATS}, got {p.name!r}")
    pts = points.detach().cpu().numpy() if isinstance(points, torch.Tensor) else np.asarray(points)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    pts = pts.astype(np.float32 if suffix == ".glb" else np.float64)
    if not np.isfinite(pts).all():
        raise ValueError("points contains NaN or inf values")
    rgba = None
    if colors is not None:
        rgb = _colors_uint8(colors, len(pts))
        rgba = np.concatenate([rgb, np.full((len(pts), 1), 255, np.uint8)], axis=1)
    cloud = trimesh.PointCloud(pts, colors=rgba)

    def write(tmp: Path) -> None:
        if suffix == ".glb":
            tmp.write_bytes(trimesh.Scene(cloud).export(file_type="glb"))
        else:
            tmp.write_bytes(cloud.export(file_type="ply", encoding="binary"))

    return _atomic_write(p, write)


@dataclass(frozen=True)
class PointCloudData:
    """Points (N, 3) float and colours (N, 3) uint8 (``None`` if the file has none)."""

    points: np.ndarray
    colors: np.ndarray | None


def read_point_cloud(path: str | os.PathLike) -> PointCloudData:
    """Read a ``.ply`` or ``.glb`` point cloud written by :func:`write_point_cloud` (or another tool)."""
    import trimesh

    p = Path(path)
    try:
        loaded = trimesh.load(p, force=None)
    except Exception as exc:  # trimesh raises many types on broken files
        raise ValueError(f"{p}: cannot read point cloud: {exc}") from None
    geoms: Sequence[Any] = list(loaded.geometry.values()) if isinstance(loaded, trimesh.Scene) else [loaded]
    clouds = [g for g in geoms if isinstance(g, trimesh.PointCloud)]
    if not clouds:
        raise ValueError(f"{p}: holds no point cloud")
    pts = np.concatenate([np.asarray(c.vertices) for c in clouds])
    cols = None
    if all(c.colors is not None and len(c.colors) == len(c.vertices) for c in clouds):
        cols = np.concatenate([np.asarray(c.colors)[:, :3] for c in clouds]).astype(np.uint8)
    return PointCloudData(pts, cols)
