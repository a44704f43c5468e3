"""Camera-path editor state and its pure functions (no GUI code here; viser callbacks call these).

A path is either a named preset of ``worldstereo.trajectory`` (with an ``amount`` scaling its motion) or a list
of keyframes (``trajectory.Keyframe``: camera-to-world pose in OpenCV axes + vertical fov in radians) smoothed by
``trajectory.Path``. :func:`path_cameras` is the one function that turns the state into cameras: the viewport
preview and the generation both call it, so the previewed path is exactly the generated one.

Every editing function returns a new :class:`PathEditorState` (the old one is left as it was).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

import numpy as np
import torch

from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.formats import read_camera_json, read_nerfstudio_path

PATH_MODES = ("preset", "keyframes")


@dataclass(frozen=True)
class PathEditorState:
    """The camera path being edited.

    Attributes:
        mode: ``"preset"`` or ``"keyframes"``.
        preset: preset name (``trajectory.list_presets()``).
        amount: motion multiplier of the preset's angles and distances (1 = the reference move).
        keyframes: keyframes of the keyframe mode, in path order.
        closed: the keyframe path loops back to its first keyframe.
        selected: index of the selected keyframe (for gizmo edits, delete, reorder, fov) or None.
        guard: shorten preset moves that would pass through the known geometry (``trajectory.guarded_preset``).
    """

    mode: str = "preset"
    preset: str = "orbit_right"
    amount: float = 1.0
    keyframes: tuple[trajectory.Keyframe, ...] = field(default_factory=tuple)
    closed: bool = False
    selected: int | None = None
    guard: bool = True

    def __post_init__(self) -> None:
        if self.mode not in PATH_MODES:
            raise ValueError(f"mode must be one of {PATH_MODES}, got {self.mode!r}")
        if self.preset not in trajectory.PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; valid presets: {', '.join(trajectory.list_presets())}")
        a = float(self.amount)
        if not math.isfinite(a) or not 0.0 < a <= 4.0:
            raise ValueError(f"amount must lie in (0, 4], got {self.amount!r}")
        if self.selected is not None and not 0 <= self.selected < len(self.keyframes):
            raise ValueError(f"selected must index a keyframe (0..{len(self.keyframes) - 1}), got {self.selected}")


@dataclass(frozen=True)
class PathResult:
    """Cameras of a path and a sentence about them (e.g. that the collision guard shortened the move)."""

    cameras: CameraParameters
    message: str


# ------------------------------------------------------------------------------------------- editing (pure)
def _check_index(state: PathEditorState, index: int) -> int:
    if not 0 <= index < len(state.keyframes):
        raise ValueError(f"keyframe index must be in 0..{len(state.keyframes) - 1}, got {index}")
    return index


def set_preset(state: PathEditorState, name: str, amount: float | None = None) -> PathEditorState:
    """Switch to preset mode with preset ``name`` (and ``amount`` if given)."""
    return dataclasses.replace(state, mode="preset", preset=name, amount=state.amount if amount is None else amount)


def add_keyframe(state: PathEditorState, T_world_camera: Any, fov_y: float) -> PathEditorState:
    """Insert a keyframe after the selected one (or at the end) and select it; switches to keyframe mode."""
    key = trajectory.Keyframe(np.asarray(T_world_camera, dtype=np.float64), fov_y)
    keys = list(state.keyframes)
    at = len(keys) if state.selected is None else state.selected + 1
    keys.insert(at, key)
    return dataclasses.replace(state, mode="keyframes", keyframes=tuple(keys), selected=at)


def move_keyframe(state: PathEditorState, index: int, T_world_camera: Any) -> PathEditorState:
    """Replace keyframe ``index``'s pose (e.g. after a gizmo drag); its fov is kept."""
    _check_index(state, index)
    keys = list(state.keyframes)
    keys[index] = trajectory.Keyframe(np.asarray(T_world_camera, dtype=np.float64), keys[index].fov_y, keys[index].duration)
    return dataclasses.replace(state, keyframes=tuple(keys))


def set_keyframe_fov(state: PathEditorState, index: int, fov_y: float) -> PathEditorState:
    """Set the vertical fov (radians) of keyframe ``index``."""
    _check_index(state, index)
    keys = list(state.keyframes)
    keys[index] = trajectory.Keyframe(keys[index].T_world_camera, fov_y, keys[index].duration)
    return dataclasses.replace(state, keyframes=tuple(keys))


def delete_keyframe(state: PathEditorState, index: int) -> PathEditorState:
    """Remove keyframe ``index``; the selection moves to its predecessor (None when none is left)."""
    _check_index(state, index)
    keys = list(state.keyframes)
    del keys[index]
    sel = None if not keys else max(0, min(index - 1, len(keys) - 1))
    return dataclasses.replace(state, keyframes=tuple(keys), selected=sel)


def reorder_keyframe(state: PathEditorState, index: int, offset: int) -> PathEditorState:
    """Move keyframe ``index`` by ``offset`` places (clamped to the list); it stays selected."""
    _check_index(state, index)
    keys = list(state.keyframes)
    to = max(0, min(index + int(offset), len(keys) - 1))
    key = keys.pop(index)
    keys.insert(to, key)
    return dataclasses.replace(state, keyframes=tuple(keys), selected=to)


def select_keyframe(state: PathEditorState, index: int | None) -> PathEditorState:
    if index is not None:
        _check_index(state, index)
    return dataclasses.replace(state, selected=index)


def clear_keyframes(state: PathEditorState) -> PathEditorState:
    return dataclasses.replace(state, keyframes=(), selected=None)


def keyframes_from_cameras(state: PathEditorState, cameras: CameraParameters, max_keys: int | None = None) -> PathEditorState:
    """Keyframe mode with one keyframe per camera (every ``len / max_keys``-th, first and last kept)."""
    n = len(cameras)
    idx = list(range(n))
    if max_keys is not None and n > max_keys >= 2:
        idx = sorted(set(np.round(np.linspace(0, n - 1, max_keys)).astype(int).tolist()))
    keys = tuple(trajectory.Keyframe.from_camera(cameras, i) for i in idx)
    return dataclasses.replace(state, mode="keyframes", keyframes=keys, selected=None, closed=False)


# ------------------------------------------------------------------------------------------- sampling (the one path)
def _preset_params(name: str, amount: float, start_camera: CameraParameters, scene_depth: float) -> dict[str, Any]:
    """Preset parameters for ``amount`` x the reference move (angles, radii, heights and distances scaled)."""
    spec = trajectory.PRESETS[name]
    params: dict[str, Any] = {}
    if amount == 1.0:
        return params
    for key, default in spec.params.items():
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            params[key] = default * amount
    if "distance" in spec.params:
        # translations: the default distance is a fraction of the depth; measure it from the reference move
        ref = trajectory.preset(name, start_camera, 2, scene_depth)
        params["distance"] = float((ref.camera_centers[1] - ref.camera_centers[0]).norm()) * amount
    if "height" in spec.params:
        params["height"] = 0.5 * scene_depth * amount
    return params


def path_cameras(
    state: PathEditorState,
    start_camera: CameraParameters,
    scene_depth: float,
    num_frames: int,
    points: torch.Tensor | np.ndarray | None = None,
) -> PathResult:
    """The cameras of the edited path: ``num_frames`` cameras at the start camera's size (float32).

    Preset mode: ``trajectory.preset`` (or ``trajectory.guarded_preset`` against ``points`` (N, 3) when
    ``state.guard``). Keyframe mode: ``trajectory.Path(keyframes, closed).sample``.
    Raises ValueError for a keyframe path with fewer than two keyframes.
    """
    if state.mode == "preset":
        params = _preset_params(state.preset, float(state.amount), start_camera, scene_depth)
        if state.guard and points is not None and len(points) > 0:
            g = trajectory.guarded_preset(state.preset, start_camera, num_frames, scene_depth, points, **params)
            return PathResult(g.cameras.to(dtype=torch.float32), g.message if g.shortened else "")
        cams = trajectory.preset(state.preset, start_camera, num_frames, scene_depth, **params)
        return PathResult(cams.to(dtype=torch.float32), "")
    if len(state.keyframes) < 2:
        raise ValueError(f"a keyframe path needs at least two keyframes, it has {len(state.keyframes)}")
    path = trajectory.Path(list(state.keyframes), closed=state.closed)
    cams = path.sample(num_frames, start_camera.width, start_camera.height)
    return PathResult(cams, "")


def spline_points(state: PathEditorState, samples_per_segment: int = 16) -> np.ndarray:
    """(M, 3) dense camera centres of a keyframe path (for drawing its curve); empty for fewer than two keys."""
    if state.mode != "keyframes" or len(state.keyframes) < 2:
        return np.zeros((0, 3))
    path = trajectory.Path(list(state.keyframes), closed=state.closed)
    t = np.linspace(0.0, path.duration, samples_per_segment * path.num_segments + 1)
    return path.evaluate(t).T_world_camera[:, :3, 3]


# ------------------------------------------------------------------------------------------- import
def read_path_file(path: str | FsPath) -> CameraParameters:
    """Cameras from an official ``camera.json`` or a nerfstudio ``camera_path.json`` (told apart by content).

    Raises ValueError (naming the file) for broken JSON or files of neither kind.
    """
    p = FsPath(path)
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{p.name}: cannot read: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p.name}: broken JSON ({exc})") from None
    if isinstance(data, dict) and "camera_path" in data:
        return read_nerfstudio_path(p).cameras
    if isinstance(data, dict) and "extrinsic" in data:
        return read_camera_json(p)[0]
    raise ValueError(f"{p.name}: neither an official camera.json (extrinsic/intrinsic) nor a nerfstudio camera_path.json")
