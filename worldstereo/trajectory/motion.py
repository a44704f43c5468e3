"""Official ``motion_list`` strings (``<words>-phi<deg>-theta<deg>``, ``<direction>-<distance>``) -> cameras."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from worldstereo.camera import CameraParameters
from worldstereo.trajectory.presets import _DIRECTIONS, _orbit, _Start, _start_of, _to_cameras, _translate

__all__ = ["MotionSegment", "cameras_from_motion_list", "parse_motion"]


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
