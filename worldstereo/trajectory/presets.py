"""The reference method's camera-path presets: named moves from a start camera.

Preset semantics, read from the official ``camera.json`` matrices (``assets/examples``):

* Rotations are ``W(phi, theta) = Ry(phi) @ Rx(theta)`` expressed in a fixed reference frame ``axes`` (columns:
  reference x right, y down, z forward in world) and applied on the world side: ``R_k = W_k R_start``. ``phi > 0``
  turns the optical axis to the right (+x), ``theta > 0`` turns it up (-y). Angles grow linearly with the frame index:
  frame ``k`` of ``n`` (``k = 0..n-1``) has ``phi * k / (n - 1)``; frame 0 is the start camera.
* An orbit moves the camera rigidly with that rotation about a pivot on the start camera's optical axis at
  ``scene_depth``: ``C_k = P + W_k (C_start - P)``, so the pivot stays on the optical axis at constant distance.
  ``orbit_right`` (camera moves right, looks left) is ``phi = -angle``; ``orbit_up`` (camera rises, looks down) is
  ``theta = -angle``. The official ``traj_left/right`` are 180 degree orbits, ``traj_up`` a 45 degree orbit, over
  21 frames.
* ``eloop``: the centre runs once round an ellipse in the start camera's image plane, ``x = rx D sin(2 pi s)``,
  ``y = -ry D (1 - cos(2 pi s))`` (``D`` = scene depth, ``rx = 0.3``, ``ry = 0.4``: right and up first), always looking
  at the point ``D`` ahead of the start camera; the last pose equals the first.
* ``look_around`` turns a full circle in place (to the right); ``walk`` turns by ``yaw`` degrees over the first
  third of the frames, then walks forward ``distance`` (default 0.5 x depth); ``out_and_back`` turns over the
  first fifth, walks out ``distance`` (default 1 x depth), rounds a half circle and walks back along a parallel
  line, still facing out (no pose twice: a world's dataset gets no repeated camera). From a panorama's centre, where the
  depth is the panorama's median distance, these explore it; they work from a photo too.
* ``motion_list`` strings ``<words>-phi<deg>-theta<deg>`` are orbits by ``(phi, theta)`` about the pivot on the
  current optical axis; the words (``pan_right``, ``rotation_left_up``, ``left``) do **not** decide the motion (the
  official files label orbits ``pan_right`` and ``left`` with either sign). The reference frame of a whole list is
  the first camera's. ``<direction>-<distance>`` strings are translations in the current camera frame (scene units).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from worldstereo.camera import ROTATION_TOLERANCE, CameraParameters

__all__ = ["PRESETS", "list_presets", "preset"]


def _rot_y(deg: float) -> np.ndarray:
    return Rotation.from_euler("y", deg, degrees=True).as_matrix()


def _rot_x(deg: float) -> np.ndarray:
    return Rotation.from_euler("x", deg, degrees=True).as_matrix()


@dataclass(frozen=True)
class _Start:
    """The start of a preset: camera-to-world pose, reference axes, depth."""

    c2w: np.ndarray  # (4, 4)
    axes: np.ndarray  # (3, 3) columns: reference x, y, z in world
    depth: float

    @property
    def R(self) -> np.ndarray:
        return self.c2w[:3, :3]

    @property
    def C(self) -> np.ndarray:
        return self.c2w[:3, 3]


def _fractions(num_frames: int) -> np.ndarray:
    return np.linspace(0.0, 1.0, num_frames) if num_frames > 1 else np.zeros(1)


def _world_rotation(axes: np.ndarray, phi: float, theta: float) -> np.ndarray:
    """``Ry(phi) Rx(theta)`` of the reference frame, as a world-frame rotation."""
    return axes @ _rot_y(phi) @ _rot_x(theta) @ axes.T


def _orbit(start: _Start, n: int, phi: float, theta: float, pivot: Any = None) -> np.ndarray:
    P = start.C + start.depth * start.R[:, 2] if pivot is None else np.asarray(pivot, dtype=np.float64).reshape(3)
    out = np.tile(np.eye(4), (n, 1, 1))
    for k, s in enumerate(_fractions(n)):
        W = _world_rotation(start.axes, phi * s, theta * s)
        out[k, :3, :3] = W @ start.R
        out[k, :3, 3] = P + W @ (start.C - P)
    return out


def _pan(start: _Start, n: int, phi: float, theta: float) -> np.ndarray:
    out = np.tile(start.c2w, (n, 1, 1))
    for k, s in enumerate(_fractions(n)):
        out[k, :3, :3] = _world_rotation(start.axes, phi * s, theta * s) @ start.R
    return out


def _translate(start: _Start, n: int, direction_camera: np.ndarray, distance: float) -> np.ndarray:
    out = np.tile(start.c2w, (n, 1, 1))
    step = start.R @ np.asarray(direction_camera, dtype=np.float64) * distance
    out[:, :3, 3] = start.C + _fractions(n)[:, None] * step
    return out


def _look_at_camera_frame(eye: np.ndarray, target: np.ndarray) -> np.ndarray:
    """(3, 3) rotation (columns x, y, z) of a camera at ``eye`` looking at ``target``, up = -y of the frame."""
    z = target - eye
    z = z / np.linalg.norm(z)
    x = np.cross(np.array([0.0, 1.0, 0.0]), z)  # right = down x forward
    x = x / np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def _eloop(start: _Start, n: int, rx: float, ry: float) -> np.ndarray:
    D = start.depth
    target = np.array([0.0, 0.0, D])
    out = np.tile(np.eye(4), (n, 1, 1))
    for k, s in enumerate(_fractions(n)):
        a = 2.0 * math.pi * s
        eye = np.array([rx * D * math.sin(a), -ry * D * (1.0 - math.cos(a)), 0.0])
        local = np.eye(4)
        local[:3, :3] = _look_at_camera_frame(eye, target)
        local[:3, 3] = eye
        out[k] = start.c2w @ local
    out[-1] = start.c2w if n > 1 else out[-1]
    return out


def _aerial(start: _Start, n: int, height: float, pitch: float, yaw: float) -> np.ndarray:
    """First half: rise by ``height`` along the reference up while pitching down; second half: yaw in place."""
    out = np.tile(np.eye(4), (n, 1, 1))
    up = -start.axes[:, 1]
    for k, s in enumerate(_fractions(n)):
        a, b = min(2.0 * s, 1.0), max(2.0 * s - 1.0, 0.0)
        R_pitch = start.R @ _rot_x(-pitch * a)  # about the camera's own x: look down
        out[k, :3, :3] = _world_rotation(start.axes, yaw * b, 0.0) @ R_pitch
        out[k, :3, 3] = start.C + up * height * a
    return out


_DIRECTIONS = {
    "left": (-1.0, 0.0, 0.0),
    "right": (1.0, 0.0, 0.0),
    "up": (0.0, -1.0, 0.0),
    "down": (0.0, 1.0, 0.0),
    "forward": (0.0, 0.0, 1.0),
    "backward": (0.0, 0.0, -1.0),
}

# A preset builds (num_frames, 4, 4) camera-to-world poses from a start, a frame count, a motion-amount scale
# (1 = full move; the collision guard shrinks it) and its own keyword parameters.
PresetFn = Callable[..., np.ndarray]


@dataclass(frozen=True)
class _PresetSpec:
    fn: PresetFn
    doc: str
    params: dict[str, Any] = field(default_factory=dict)


def _orbit_preset(sign_phi: float, sign_theta: float, default_angle: float) -> _PresetSpec:
    def fn(start: _Start, n: int, scale: float, angle: float = default_angle, pivot: Any = None) -> np.ndarray:
        return _orbit(start, n, sign_phi * angle * scale, sign_theta * angle * scale, pivot)

    return _PresetSpec(fn, "orbit about the pivot at scene depth on the optical axis", {"angle": default_angle, "pivot": None})


def _pan_preset(sign_phi: float, sign_theta: float, default_angle: float) -> _PresetSpec:
    def fn(start: _Start, n: int, scale: float, angle: float = default_angle) -> np.ndarray:
        return _pan(start, n, sign_phi * angle * scale, sign_theta * angle * scale)

    return _PresetSpec(fn, "rotation in place", {"angle": default_angle})


def _translate_preset(direction: str, default_fraction: float) -> _PresetSpec:
    def fn(start: _Start, n: int, scale: float, distance: float | None = None) -> np.ndarray:
        d = default_fraction * start.depth if distance is None else float(distance)
        return _translate(start, n, np.array(_DIRECTIONS[direction]), d * scale)

    return _PresetSpec(
        fn, f"translate {direction} in the camera frame (default {default_fraction} x depth)", {"distance": None}
    )


def _walk_preset(start: _Start, n: int, scale: float, yaw: float = 0.0, distance: float | None = None) -> np.ndarray:
    """Turn ``yaw`` degrees (right +) over the first third of the frames, then walk forward ``distance``
    (default 0.5 x depth) in the turned camera's frame."""
    d = 0.5 * start.depth if distance is None else float(distance)
    turning, base = _turn(start, n // 3 if yaw and n >= 3 else 0, yaw * scale)
    walked = _translate(_Start(base, start.axes, start.depth), n - len(turning), np.array(_DIRECTIONS["forward"]), d * scale)
    return np.concatenate([turning, walked])


def _turn(start: _Start, frames: int, yaw: float) -> tuple[np.ndarray, np.ndarray]:
    """``frames`` poses turning in place from the start towards ``yaw`` degrees, and the pose turned by ``yaw``
    (with no frames to turn over, the path starts turned)."""
    turned = _pan(start, max(frames, 1) + 1, yaw, 0.0)
    return turned[:frames], turned[-1]


#: width of ``out_and_back``'s U-turn, as a share of its ``distance``: the way back runs this far to the right
HAIRPIN_WIDTH = 0.5


def _leg_reaching(reach: float, r: float) -> float:
    """Length ``L`` of a hairpin's straight legs whose U-turn (radius ``r``, to the right) reaches ``reach`` at most."""
    a = np.linspace(0.0, math.pi, 721)

    def farthest(length: float) -> float:
        return float(np.hypot(length + r * np.sin(a), r * (1.0 - np.cos(a))).max())

    lo, hi = 0.0, reach
    for _ in range(50):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if farthest(mid) <= reach else (lo, mid)
    return lo


def _out_and_back_preset(start: _Start, n: int, scale: float, yaw: float = 0.0, distance: float | None = None) -> np.ndarray:
    """Turn ``yaw`` degrees over the first fifth of the frames, then a hairpin, still facing out: walk forward
    ``distance`` (default 1 x depth), round a half circle of diameter ``HAIRPIN_WIDTH x distance`` to the right
    and walk back along that parallel line to beside where the walk began. Frames are spaced evenly along the
    way, so no pose comes twice (a world's dataset gets no repeated camera), and the way back sees the way
    out's view with a new baseline. It keeps facing out: turned home, the walks of a panorama world would look
    across the room at what the others invent, and could no longer run side by side in one round."""
    d = (start.depth if distance is None else float(distance)) * scale
    turning, base = _turn(start, n // 5 if yaw and n >= 5 else 0, yaw * scale)
    rest = n - len(turning)
    r = 0.5 * HAIRPIN_WIDTH * d
    d = _leg_reaching(d, r)  # the straight legs, so that the U-turn's farthest point is ``distance`` away
    total = 2.0 * d + math.pi * r
    f, right = base[:3, 2], base[:3, 0]
    out = np.tile(base, (rest, 1, 1))
    for k, s in enumerate(_fractions(rest)):
        along = s * total
        if along <= d:  # out
            pos = base[:3, 3] + along * f
        elif along <= d + math.pi * r:  # round the half circle, to the right
            a = (along - d) / r
            pos = base[:3, 3] + d * f + r * right + r * (-math.cos(a) * right + math.sin(a) * f)
        else:  # back along the parallel line
            pos = base[:3, 3] + (total - along) * f + 2.0 * r * right
        out[k, :3, 3] = pos
    return np.concatenate([turning, out])


def _orbit_generic(start: _Start, n: int, scale: float, phi: float = 0.0, theta: float = 0.0, pivot: Any = None):
    return _orbit(start, n, phi * scale, theta * scale, pivot)


def _eloop_preset(start: _Start, n: int, scale: float, rx: float = 0.3, ry: float = 0.4) -> np.ndarray:
    return _eloop(start, n, rx * scale, ry * scale)


def _aerial_preset(
    start: _Start, n: int, scale: float, height: float | None = None, pitch: float = 30.0, yaw: float = 90.0
) -> np.ndarray:
    h = 0.5 * start.depth if height is None else float(height)
    return _aerial(start, n, h * scale, pitch * scale, yaw * scale)


PRESETS: dict[str, _PresetSpec] = {
    "orbit": _PresetSpec(_orbit_generic, "orbit by (phi, theta) degrees", {"phi": 0.0, "theta": 0.0, "pivot": None}),
    "orbit_left": _orbit_preset(+1.0, 0.0, 180.0),
    "orbit_right": _orbit_preset(-1.0, 0.0, 180.0),
    "orbit_up": _orbit_preset(0.0, -1.0, 45.0),
    "orbit_down": _orbit_preset(0.0, +1.0, 45.0),
    "pan_left": _pan_preset(-1.0, 0.0, 60.0),
    "pan_right": _pan_preset(+1.0, 0.0, 60.0),
    "pan_up": _pan_preset(0.0, +1.0, 30.0),
    "pan_down": _pan_preset(0.0, -1.0, 30.0),
    "left": _translate_preset("left", 0.25),
    "right": _translate_preset("right", 0.25),
    "up": _translate_preset("up", 0.25),
    "down": _translate_preset("down", 0.25),
    "forward": _translate_preset("forward", 0.25),
    "backward": _translate_preset("backward", 0.25),
    "dolly_in": _translate_preset("forward", 0.5),
    "dolly_out": _translate_preset("backward", 0.5),
    "eloop": _PresetSpec(_eloop_preset, "closed elliptical loop in the image plane", {"rx": 0.3, "ry": 0.4}),
    "look_around": _PresetSpec(
        lambda start, n, scale, angle=360.0: _pan(start, n, angle * scale, 0.0),
        "a full turn in place, to the right (from a panorama's centre: every direction once)", {"angle": 360.0},
    ),
    "walk": _PresetSpec(_walk_preset, "turn by yaw degrees, then walk forward (default 0.5 x depth)",
                        {"yaw": 0.0, "distance": None}),
    "out_and_back": _PresetSpec(_out_and_back_preset, "turn by yaw degrees, walk out (default 1 x depth) and back "
                                "along a parallel line, facing out",
                                {"yaw": 0.0, "distance": None}),
    "aerial": _PresetSpec(_aerial_preset, "rise and pitch down, then yaw", {"height": None, "pitch": 30.0, "yaw": 90.0}),
}


def list_presets() -> list[str]:
    """Names of the registered presets, sorted."""
    return sorted(PRESETS)


def _start_of(start_camera: CameraParameters, scene_depth: float, axes: Any) -> _Start:
    if not isinstance(start_camera, CameraParameters):
        raise ValueError(f"start_camera must be CameraParameters, got {type(start_camera).__name__}")
    if len(start_camera) != 1:
        raise ValueError(f"start_camera must hold exactly one camera (B = 1), got {len(start_camera)}")
    d = float(scene_depth)
    if not math.isfinite(d) or d <= 0:
        raise ValueError(f"scene_depth must be a positive finite number, got {scene_depth!r}")
    c2w = start_camera.c2w[0].detach().cpu().double().numpy()
    if axes is None:
        A = c2w[:3, :3].copy()
    else:
        if isinstance(axes, torch.Tensor):
            axes = axes.detach().cpu().double().numpy()
        A = np.asarray(axes, dtype=np.float64)
        if A.shape != (3, 3) or not np.isfinite(A).all():
            raise ValueError(f"axes must be a finite (3, 3) rotation, got shape {A.shape}")
        if np.abs(A.T @ A - np.eye(3)).max() > ROTATION_TOLERANCE or abs(np.linalg.det(A) - 1) > ROTATION_TOLERANCE:
            raise ValueError("axes must be a rotation matrix (columns: reference x, y, z in world)")
    return _Start(c2w, A, d)


def _to_cameras(c2w: np.ndarray, start_camera: CameraParameters) -> CameraParameters:
    w2c = np.linalg.inv(c2w)
    w2c[:, 3] = [0.0, 0.0, 0.0, 1.0]
    E = torch.from_numpy(w2c).to(dtype=start_camera.dtype, device=start_camera.device)
    K = start_camera.intrinsics.expand(len(c2w), 3, 3).clone()
    return CameraParameters(K, E, start_camera.width, start_camera.height)


def _run_preset(name: str, start: _Start, num_frames: int, scale: float, params: dict[str, Any]) -> np.ndarray:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; valid presets: {', '.join(list_presets())}")
    if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
        raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
    spec = PRESETS[name]
    unknown = sorted(set(params) - set(spec.params))
    if unknown:
        raise ValueError(f"preset {name!r} has no parameter(s) {unknown}; it takes {sorted(spec.params)}")
    return spec.fn(start, int(num_frames), scale, **params)


def preset(
    name: str,
    start_camera: CameraParameters,
    num_frames: int,
    scene_depth: float,
    axes: Any = None,
    **params: Any,
) -> CameraParameters:
    """Cameras of a named preset move starting at ``start_camera`` (frame 0 is the start camera).

    Args:
        name: one of :func:`list_presets` (``orbit_left``, ``pan_right``, ``forward``, ``eloop``, ...).
        start_camera: one camera (B = 1); its intrinsics and size are kept for every frame.
        num_frames: number of cameras returned, including the start.
        scene_depth: distance of the pivot / look-at point ahead of the camera (scene units); default distances
            are fractions of it.
        axes: optional (3, 3) reference frame (columns x right, y down, z forward in world) for yaw/pitch axes;
            default the start camera's own axes. Pass the identity to yaw about the world y axis (e.g. for a tilted
            start camera in a gravity-aligned world).
        **params: the preset's parameters (``PRESETS[name].params``): ``angle`` (degrees) for orbits/pans, ``pivot``
            (3,) world point for orbits, ``distance`` (scene units) for translations, ``rx``/``ry`` for eloop,
            ``height``/``pitch``/``yaw`` for aerial, ``phi``/``theta`` for ``orbit``.
    Returns:
        (num_frames) cameras, dtype and device of ``start_camera``.
    """
    start = _start_of(start_camera, scene_depth, axes)
    return _to_cameras(_run_preset(name, start, num_frames, 1.0, params), start_camera)
