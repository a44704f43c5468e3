"""
Frames and conventions (DESIGN.md): poses here are **camera-to-world** ``T_world_camera`` 4x4 in OpenCV camera
axes (x right, y down, z forward); :class:`~worldstereo.camera.CameraParameters` stores their inverse
(world-to-camera). Angles of presets are in **degrees**, fields of view in **radians**. All maths runs in float64
numpy; outputs keep the dtype of the start camera (presets) or the requested dtype (:meth:`Path.sample`).

Sampling: :meth:`Path.sample` is the one sampler of the project (the app's editor and the pipeline both use it).
"""

from worldstereo.trajectory.guard import GuardedPath, guarded_preset
from worldstereo.trajectory.motion import MotionSegment, cameras_from_motion_list, parse_motion
from worldstereo.trajectory.presets import PRESETS, list_presets, preset
from worldstereo.trajectory.resample import reanchor, subsample
from worldstereo.trajectory.splines import Keyframe, Path, PathSample

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
    "reanchor",
    "subsample",
]
