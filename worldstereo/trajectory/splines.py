"""Keyframes -> smooth sampled cameras: :class:`Keyframe`, :class:`Path` (centripetal Catmull-Rom
positions, squad rotations) and :class:`PathSample`.

Poses are camera-to-world 4x4 in OpenCV axes (see :mod:`worldstereo.trajectory`). :meth:`Path.sample`
is the one sampler of the project (the app's editor and the pipeline both use it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from worldstereo.camera import ROTATION_TOLERANCE, CameraParameters

__all__ = ["Keyframe", "Path", "PathSample"]


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
