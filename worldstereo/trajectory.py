"""Camera paths: keyframes -> smooth sampled cameras, the reference method's presets, official ``motion_list``.

Frames and conventions (DESIGN.md): poses here are **camera-to-world** ``T_world_camera`` 4x4 in OpenCV camera
axes (x right, y down, z forward); :class:`~worldstereo.camera.CameraParameters` stores their inverse
(world-to-camera). Angles of presets are in **degrees**, fields of view in **radians**. All maths runs in float64
numpy; outputs keep the dtype of the start camera (presets) or the requested dtype (:meth:`Path.sample`).

Sampling: :meth:`Path.sample` is the one sampler of the project (the app's editor and the pipeline both use it).

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
* ``motion_list`` strings ``<words>-phi<deg>-theta<deg>`` are orbits by ``(phi, theta)`` about the pivot on the
  current optical axis; the words (``pan_right``, ``rotation_left_up``, ``left``) do **not** decide the motion (the
  official files label orbits ``pan_right`` and ``left`` with either sign). The reference frame of a whole list is
  the first camera's. ``<direction>-<distance>`` strings are translations in the current camera frame (scene units).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.spatial.transform import Rotation

from worldstereo.camera import ROTATION_TOLERANCE, CameraParameters

__all__ = [
    "GuardedPath",
    "Keyframe",
    "MotionSegment",
    "PRESETS",
    "Path",
    "PathSample",
    "cameras_from_motion_list",
    "guarded_preset",
    "list_presets",
    "parse_motion",
    "preset",
]


# ---------------------------------------------------------------------------------------------------------- keyframes
def _as_pose(name: str, value: Any) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().double().numpy()
    T = np.asarray(value, dtype=np.float64)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must have shape (4, 4), got {T.shape}")
    if not np.isfinite(T).all():
        raise ValueError(f"{name} contains NaN or inf values")
    if not np.allclose(T[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1]")
    R = T[:3, :3]
    if np.abs(R.T @ R - np.eye(3)).max() > ROTATION_TOLERANCE or abs(np.linalg.det(R) - 1.0) > ROTATION_TOLERANCE:
        raise ValueError(f"{name} rotation block is not a rotation")
    return T


@dataclass(frozen=True)
class Keyframe:
    """One key pose of a :class:`Path`.

    Attributes:
        T_world_camera: (4, 4) camera-to-world pose, OpenCV camera axes (float64 numpy).
        fov_y: vertical field of view in radians, in (0, pi).
        duration: length of the segment that starts at this keyframe, in arbitrary time units (> 0);
            ``None`` means 1. Ignored on the last keyframe of an open path.
    """

    T_world_camera: np.ndarray
    fov_y: float
    duration: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "T_world_camera", _as_pose("T_world_camera", self.T_world_camera))
        fov = float(self.fov_y)
        if not math.isfinite(fov) or not 0.0 < fov < math.pi:
            raise ValueError(f"fov_y must lie in (0, pi) radians, got {self.fov_y!r}")
        object.__setattr__(self, "fov_y", fov)
        if self.duration is not None:
            d = float(self.duration)
            if not math.isfinite(d) or d <= 0:
                raise ValueError(f"duration must be a positive number or None, got {self.duration!r}")
            object.__setattr__(self, "duration", d)

    @classmethod
    def from_camera(cls, camera: CameraParameters, index: int = 0, duration: float | None = None) -> Keyframe:
        """The keyframe of camera ``index`` of a batch (its pose and vertical fov)."""
        cam = camera[index]
        return cls(cam.c2w[0].double().cpu().numpy(), float(cam.fov_y[0]), duration)


@dataclass(frozen=True)
class PathSample:
    """Poses evaluated on a path.

    Attributes:
        T_world_camera: (N, 4, 4) camera-to-world, OpenCV axes, float64.
        fov_y: (N,) vertical field of view in radians.
        times: (N,) path times the poses were evaluated at.
    """

    T_world_camera: np.ndarray
    fov_y: np.ndarray
    times: np.ndarray


# ------------------------------------------------------------------------------------------------------------ splines
_CENTRIPETAL_ALPHA = 0.5
_EPS = 1e-12


def _hermite_tangents(p0, p1, p2, p3, tension: float) -> tuple[np.ndarray, np.ndarray]:
    """Tangents (per unit segment parameter) at p1 and p2 of a centripetal Catmull-Rom segment p1 -> p2.

    Non-uniform Catmull-Rom in Hermite form with knot gaps ``|p_{i+1} - p_i| ** 0.5``; ``tension`` scales the
    tangents by ``1 - tension`` as the Kochanek-Bartels tension does (1: zero tangents, the path stops at keys).
    """
    d0 = max(np.linalg.norm(p1 - p0) ** _CENTRIPETAL_ALPHA, _EPS)
    d1 = max(np.linalg.norm(p2 - p1) ** _CENTRIPETAL_ALPHA, _EPS)
    d2 = max(np.linalg.norm(p3 - p2) ** _CENTRIPETAL_ALPHA, _EPS)
    m1 = (p1 - p0) / d0 - (p2 - p0) / (d0 + d1) + (p2 - p1) / d1
    m2 = (p2 - p1) / d1 - (p3 - p1) / (d1 + d2) + (p3 - p2) / d2
    scale = (1.0 - tension) * d1
    return m1 * scale, m2 * scale


def _hermite(p1, p2, m1, m2, u: np.ndarray) -> np.ndarray:
    u = u[:, None]
    u2, u3 = u * u, u * u * u
    return (2 * u3 - 3 * u2 + 1) * p1 + (u3 - 2 * u2 + u) * m1 + (-2 * u3 + 3 * u2) * p2 + (u3 - u2) * m2


def _slerp(a: Rotation, b: Rotation, u: np.ndarray) -> Rotation:
    """Per-element slerp from rotation ``a`` to ``b`` (single rotations) at fractions ``u`` (N,)."""
    rel = (a.inv() * b).as_rotvec()
    return a * Rotation.from_rotvec(u[:, None] * rel[None, :])


def _slerp_pairs(a: Rotation, b: Rotation, u: np.ndarray) -> Rotation:
    """Slerp between stacks ``a`` and ``b`` (N rotations each) at fractions ``u`` (N,)."""
    rel = (a.inv() * b).as_rotvec()
    return a * Rotation.from_rotvec(u[:, None] * rel)


class Path:
    """A camera path through keyframes.

    Args:
        keyframes: at least one :class:`Keyframe` (two or more for an actual move).
        closed: close the loop (the last keyframe connects back to the first; sampling ends on the first pose).
        tension: Kochanek-Bartels tension in [0, 1]: 0 is a centripetal Catmull-Rom spline, 1 stops at every key.
        arc_length: space the samples evenly by position arc length instead of by time (durations are then
            ignored; a path that does not move falls back to time).
        rotation: ``"squad"`` (smooth, C1 through keys) or ``"slerp"`` (piecewise geodesic).

    Positions use the spline; rotations squad/slerp; the fov is linear per segment. All three hit the keyframes
    exactly at the keyframe times (:attr:`keyframe_times`). Sampling is deterministic.
    """

    def __init__(
        self,
        keyframes: Sequence[Keyframe],
        closed: bool = False,
        tension: float = 0.0,
        arc_length: bool = False,
        rotation: str = "squad",
    ) -> None:
        keyframes = list(keyframes)
        if not keyframes:
            raise ValueError("keyframes must hold at least one Keyframe")
        for i, k in enumerate(keyframes):
            if not isinstance(k, Keyframe):
                raise ValueError(f"keyframes[{i}] must be a Keyframe, got {type(k).__name__}")
        if not math.isfinite(float(tension)) or not 0.0 <= float(tension) <= 1.0:
            raise ValueError(f"tension must lie in [0, 1], got {tension!r}")
        if rotation not in ("squad", "slerp"):
            raise ValueError(f"rotation must be 'squad' or 'slerp', got {rotation!r}")
        self.keyframes = keyframes
        self.closed = bool(closed)
        self.tension = float(tension)
        self.arc_length = bool(arc_length)
        self.rotation = rotation
        self._positions = np.stack([k.T_world_camera[:3, 3] for k in keyframes])
        self._rotations = Rotation.from_matrix(np.stack([k.T_world_camera[:3, :3] for k in keyframes]))
        self._fovs = np.array([k.fov_y for k in keyframes])
        n_seg = self.num_segments
        durs = [keyframes[i].duration or 1.0 for i in range(n_seg)]
        self._knots = np.concatenate([[0.0], np.cumsum(durs)]) if n_seg else np.zeros(1)

    @classmethod
    def from_cameras(cls, cameras: CameraParameters, **kwargs: Any) -> Path:
        """A path whose keyframes are every camera of ``cameras`` (unit durations)."""
        return cls([Keyframe.from_camera(cameras, i) for i in range(len(cameras))], **kwargs)

    # ------------------------------------------------------------------ structure
    @property
    def num_segments(self) -> int:
        k = len(self.keyframes)
        if k < 2:
            return 0
        return k if self.closed else k - 1

    @property
    def duration(self) -> float:
        """Total path time (sum of the segment durations)."""
        return float(self._knots[-1])

    @property
    def keyframe_times(self) -> np.ndarray:
        """(K,) path time at which each keyframe is reached."""
        return self._knots[: len(self.keyframes)].copy()

    def _key(self, i: int) -> int:
        k = len(self.keyframes)
        if self.closed:
            return i % k
        return min(max(i, 0), k - 1)

    def _point(self, i: int) -> np.ndarray:
        """Keyframe position ``i`` with reflected phantom points past the ends of an open path."""
        k = len(self.keyframes)
        P = self._positions
        if self.closed:
            return P[i % k]
        if i < 0:
            return 2 * P[0] - P[1]
        if i > k - 1:
            return 2 * P[k - 1] - P[k - 2]
        return P[i]

    def _squad_control(self, i: int) -> Rotation:
        k = len(self.keyframes)
        q = self._rotations[self._key(i)]
        if not self.closed and (i <= 0 or i >= k - 1):
            return q
        q_prev, q_next = self._rotations[self._key(i - 1)], self._rotations[self._key(i + 1)]
        a = (q.inv() * q_next).as_rotvec()
        b = (q.inv() * q_prev).as_rotvec()
        return q * Rotation.from_rotvec(-(1.0 - self.tension) * (a + b) / 4.0)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, times: Any) -> PathSample:
        """Poses at path times ``times`` (N,), clipped to ``[0, duration]``."""
        t = np.atleast_1d(np.asarray(times, dtype=np.float64))
        if not np.isfinite(t).all():
            raise ValueError("times contains NaN or inf values")
        n = t.shape[0]
        T = np.tile(np.eye(4), (n, 1, 1))
        if self.num_segments == 0:
            T[:] = self.keyframes[0].T_world_camera
            return PathSample(T, np.full(n, self._fovs[0]), t)
        t = np.clip(t, 0.0, self.duration)
        seg = np.clip(np.searchsorted(self._knots, t, side="right") - 1, 0, self.num_segments - 1)
        u = (t - self._knots[seg]) / (self._knots[seg + 1] - self._knots[seg])
        pos = np.zeros((n, 3))
        fov = np.zeros(n)
        rot = np.zeros((n, 3, 3))
        for s in np.unique(seg):
            sel = seg == s
            us = u[sel]
            p0, p1, p2, p3 = (self._point(s + j) for j in (-1, 0, 1, 2))
            m1, m2 = _hermite_tangents(p0, p1, p2, p3, self.tension)
            pos[sel] = _hermite(p1, p2, m1, m2, us)
            i1, i2 = self._key(s), self._key(s + 1)
            fov[sel] = (1 - us) * self._fovs[i1] + us * self._fovs[i2]
            q1, q2 = self._rotations[i1], self._rotations[i2]
            if self.rotation == "slerp":
                rot[sel] = _slerp(q1, q2, us).as_matrix()
            else:
                a = _slerp(q1, q2, us)
                b = _slerp(self._squad_control(s), self._squad_control(s + 1), us)
                rot[sel] = _slerp_pairs(a, b, 2 * us * (1 - us)).as_matrix()
        T[:, :3, :3] = rot
        T[:, :3, 3] = pos
        return PathSample(T, fov, t)

    def sample_times(self, num_frames: int) -> np.ndarray:
        """(num_frames,) path times of an even sampling from the first keyframe to the end (inclusive).

        A closed path ends where it started, so its last sample repeats the first pose (as the official ``eloop``).
        """
        if isinstance(num_frames, bool) or not isinstance(num_frames, (int, np.integer)) or num_frames < 1:
            raise ValueError(f"num_frames must be a positive integer, got {num_frames!r}")
        if num_frames == 1 or self.num_segments == 0:
            return np.zeros(num_frames)
        if not self.arc_length:
            return np.linspace(0.0, self.duration, num_frames)
        dense_t = np.linspace(0.0, self.duration, 64 * self.num_segments + 1)
        p = self.evaluate(dense_t).T_world_camera[:, :3, 3]
        cum = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(p, axis=0), axis=1))])
        if cum[-1] < 1e-9:
            return np.linspace(0.0, self.duration, num_frames)
        return np.interp(np.linspace(0.0, cum[-1], num_frames), cum, dense_t)

    def sample(self, num_frames: int, width: int, height: int, dtype: torch.dtype = torch.float32) -> CameraParameters:
        """Sample ``num_frames`` cameras of size ``width x height`` (centred principal point, square pixels)."""
        s = self.evaluate(self.sample_times(num_frames))
        f = 0.5 * height / np.tan(0.5 * s.fov_y)
        K = np.zeros((len(f), 3, 3))
        K[:, 0, 0] = f
        K[:, 1, 1] = f
        K[:, 0, 2] = 0.5 * width
        K[:, 1, 2] = 0.5 * height
        K[:, 2, 2] = 1.0
        w2c = np.linalg.inv(s.T_world_camera)
        w2c[:, 3] = [0.0, 0.0, 0.0, 1.0]
        return CameraParameters(torch.from_numpy(K).to(dtype), torch.from_numpy(w2c).to(dtype), width, height)


# ------------------------------------------------------------------------------------------------------------ presets
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


# ---------------------------------------------------------------------------------------------- collision guard
@dataclass(frozen=True)
class GuardedPath:
    """A preset move after the collision guard.

    Attributes:
        cameras: the (possibly shortened) cameras, ``num_frames`` of them.
        shortened: True if the full move came closer than ``clearance`` to the point cloud.
        scale: fraction of the requested motion amount kept (1.0 = unchanged, 0.0 = the camera stays put).
        clearance: the distance threshold used (scene units).
        min_distance: closest approach of the returned path's camera centres to the points.
        message: a sentence for the user.
    """

    cameras: CameraParameters
    shortened: bool
    scale: float
    clearance: float
    min_distance: float
    message: str


def _path_clearance(tree: cKDTree, c2w: np.ndarray) -> float:
    centres = c2w[:, :3, 3]
    # also test the midpoints, so a fast move cannot jump over thin geometry between two frames
    mids = 0.5 * (centres[1:] + centres[:-1])
    dist, _ = tree.query(np.concatenate([centres, mids]) if len(mids) else centres)
    return float(np.min(dist))


def guarded_preset(
    name: str,
    start_camera: CameraParameters,
    num_frames: int,
    scene_depth: float,
    points: Any,
    clearance: float | None = None,
    axes: Any = None,
    **params: Any,
) -> GuardedPath:
    """:func:`preset`, shortened where the move would pass through the known geometry.

    The motion amount (angles, distances) is scaled down by bisection until every sampled camera centre (and
    every midpoint between consecutive centres) keeps at least ``clearance`` from ``points``.

    Args:
        points: (N, 3) world points of the known geometry (e.g. the global point cloud).
        clearance: minimum distance in scene units; default ``0.05 * scene_depth``.
    """
    start = _start_of(start_camera, scene_depth, axes)
    pts = points.detach().cpu().double().numpy() if isinstance(points, torch.Tensor) else np.asarray(points, float)
    if pts.ndim != 2 or pts.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError("points contains NaN or inf values")
    clear = 0.05 * start.depth if clearance is None else float(clearance)
    if not math.isfinite(clear) or clear < 0:
        raise ValueError(f"clearance must be a non-negative number, got {clearance!r}")
    n_check = max(4 * (int(num_frames) - 1) + 1, 2)
    full = _run_preset(name, start, num_frames, 1.0, params)
    if len(pts) == 0:
        return GuardedPath(_to_cameras(full, start_camera), False, 1.0, clear, math.inf, "no geometry to avoid")
    tree = cKDTree(pts)

    def safe(scale: float) -> bool:
        return _path_clearance(tree, _run_preset(name, start, n_check, scale, params)) >= clear

    if safe(1.0):
        d = _path_clearance(tree, full)
        return GuardedPath(_to_cameras(full, start_camera), False, 1.0, clear, d, "path is clear of the geometry")
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if safe(mid) else (lo, mid)
    c2w = _run_preset(name, start, num_frames, lo, params)
    d = _path_clearance(tree, c2w)
    msg = (
        f"{name}: the full move passes within {clear:.3g} of the scene geometry; "
        f"shortened to {100 * lo:.0f}% of its extent"
    )
    if lo == 0.0:
        msg = f"{name}: the start camera is already within {clear:.3g} of the geometry; the camera stays put"
    return GuardedPath(_to_cameras(c2w, start_camera), True, lo, clear, d, msg)


# ------------------------------------------------------------------------------------------------- motion lists
@dataclass(frozen=True)
class MotionSegment:
    """One parsed official ``motion_list`` item.

    Attributes:
        text: the original string.
        label: its leading words (``pan_right``, ``rotation_left_up``, ``right``); informative only.
        kind: ``"orbit"`` (phi/theta given) or ``"translate"``.
        phi: yaw in degrees (> 0 turns the view right); 0 for translations.
        theta: pitch in degrees (> 0 turns the view up); 0 for translations.
        direction: translation direction in the camera frame (``left``, ``right``, ``up``, ``down``, ``forward``,
            ``backward``), ``None`` for orbits.
        distance: translation distance in scene units (0 for orbits).
    """

    text: str
    label: str
    kind: str
    phi: float = 0.0
    theta: float = 0.0
    direction: str | None = None
    distance: float = 0.0


_NUM = r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?"
_ORBIT_RE = re.compile(rf"^(?P<label>[A-Za-z_]+)-phi(?P<phi>{_NUM})-theta(?P<theta>{_NUM})$")
_TRANSLATE_RE = re.compile(rf"^(?P<label>[A-Za-z_]+)-(?P<dist>{_NUM})$")
_TRANSLATE_ALIASES = {"back": "backward", "backwards": "backward", "forwards": "forward", "front": "forward"}


def parse_motion(text: str) -> MotionSegment:
    """Parse one official ``motion_list`` string.

    ``rotation_right-phi53.47-theta0`` / ``pan_right-phi-72.26-theta0`` -> orbit with ``phi``/``theta`` (the sign
    follows the number: ``phi-72.26`` is -72.26); ``right-3.17`` -> translation right by 3.17 scene units.
    """
    if not isinstance(text, str):
        raise ValueError(f"motion must be a string, got {type(text).__name__}")
    s = text.strip()
    m = _ORBIT_RE.match(s)
    if m:
        phi, theta = float(m["phi"]), float(m["theta"])
        if not (math.isfinite(phi) and math.isfinite(theta)):
            raise ValueError(f"motion {text!r}: phi and theta must be finite")
        return MotionSegment(text, m["label"], "orbit", phi=phi, theta=theta)
    m = _TRANSLATE_RE.match(s)
    if m:
        label = m["label"].lower()
        direction = _TRANSLATE_ALIASES.get(label, label)
        if direction not in _DIRECTIONS:
            raise ValueError(
                f"motion {text!r}: unknown translation direction {m['label']!r}; valid: {', '.join(_DIRECTIONS)}"
            )
        dist = float(m["dist"])
        if not math.isfinite(dist):
            raise ValueError(f"motion {text!r}: distance must be finite")
        return MotionSegment(text, m["label"], "translate", direction=direction, distance=dist)
    raise ValueError(
        f"motion {text!r} is not of the form '<words>-phi<deg>-theta<deg>' or '<direction>-<distance>'"
    )


def cameras_from_motion_list(
    motion_list: Sequence[str | MotionSegment],
    start_camera: CameraParameters,
    frames_per_segment: int = 40,
    scene_depth: float = 1.0,
    axes: Any = None,
) -> CameraParameters:
    """Chain official motion segments: ``1 + len(motion_list) * frames_per_segment`` cameras.

    Each segment starts at the previous segment's last camera (the official 81-pose files: pose 0, then poses
    1..40 for the first motion, 41..80 for the second starting from pose 40). Orbits pivot about the point
    ``scene_depth`` ahead on the current optical axis; yaw/pitch axes are those of ``axes`` (default: the first
    camera's, as in the official files). For the official images the scene depth is ``extrinsic[0][2][3]``
    (the world origin is the pivot).
    """
    if isinstance(motion_list, str):
        raise ValueError("motion_list must be a list of strings, not one string")
    segs = [m if isinstance(m, MotionSegment) else parse_motion(m) for m in motion_list]
    if isinstance(frames_per_segment, bool) or not isinstance(frames_per_segment, (int, np.integer)):
        raise ValueError(f"frames_per_segment must be a positive integer, got {frames_per_segment!r}")
    if frames_per_segment < 1:
        raise ValueError(f"frames_per_segment must be a positive integer, got {frames_per_segment!r}")
    first = _start_of(start_camera, scene_depth, axes)
    poses = [first.c2w[None]]
    current = first
    n = int(frames_per_segment) + 1
    for seg in segs:
        if seg.kind == "orbit":
            block = _orbit(current, n, seg.phi, seg.theta)
        else:
            block = _translate(current, n, np.array(_DIRECTIONS[seg.direction]), seg.distance)
        poses.append(block[1:])
        current = _Start(block[-1], first.axes, first.depth)
    return _to_cameras(np.concatenate(poses), start_camera)
