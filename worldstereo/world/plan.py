"""World plans: named trajectories in rounds, saved and loaded as ``plan.json``.

``plan.json`` (version 1; every field but ``rounds`` optional)::

    {
      "version": 1,
      "frames": 21,                                   # default frames per trajectory
      "rounds": [                                     # run in order; the trajectories of one round all
        [                                             # start from the memories the rounds before left
          {"name": "walk_000", "preset": "walk", "params": {"yaw": 0, "distance": 1.0}},
          {"name": "eloop", "camera": "renders/traj_eloop/camera.json", "frames": 21}
        ]
      ]
    }

A trajectory is a preset of :mod:`worldstereo.trajectory` with its parameters, or a camera file (an
official ``camera.json`` or a nerfstudio ``camera_path.json``; a relative path is read from the plan's
folder). A plan is meant for any input, so its lengths (``distance``, ``height``) are in units of the
start's scene depth (a panorama's median distance, a photo's median depth): ``"distance": 1.0`` walks
as far as the scene is deep, whatever its units. Angles are in degrees, ``rx``/``ry`` already relative.
(The CLI's ``--preset-param`` passes lengths in scene units, as the library's presets take them.)

Names are unique and made of letters, digits, ``_`` and ``-`` (they name output files); ``input`` and
``view`` are taken by the input views. Frames per trajectory are bounded as paths are
(:data:`~worldstereo.limits.MAX_PATH_FRAMES`).
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from worldstereo import trajectory
from worldstereo.atomic import write_text_atomic
from worldstereo.camera import CameraParameters
from worldstereo.formats import read_json_file
from worldstereo.limits import MAX_PATH_FRAMES

__all__ = [
    "MAX_PLAN_TRAJECTORIES",
    "PlanError",
    "Trajectory",
    "WorldPlan",
    "example_plan",
    "panorama_plan",
    "photo_plan",
]

PLAN_VERSION = 1
#: most trajectories a plan may hold
MAX_PLAN_TRAJECTORIES = 64
#: largest plan.json read, bytes
MAX_PLAN_BYTES = 1 << 20
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
#: the reference order of an example's official paths
OFFICIAL_ORDER = ("eloop", "up", "right", "left")
#: preset parameters that are lengths: a plan gives them in units of the scene depth
LENGTH_PARAMS = ("distance", "height")
#: names of the input views' files (``input_000``, ``view_0000``...), not free for trajectories
RESERVED_NAMES = ("input", "view")


class PlanError(ValueError):
    """A plan that cannot run, with a message naming the trajectory and field."""


@dataclass(frozen=True)
class Trajectory:
    """One trajectory of a plan.

    Attributes:
        name: unique name (letters, digits, ``_``, ``-``).
        preset: a preset name, or None for a camera file.
        params: the preset's parameters.
        camera: a camera file (absolute, or relative to the plan's folder), or None for a preset.
        frames: frames of this trajectory (None: the plan's default; a camera file: all its poses).
    """

    name: str
    preset: str | None = None
    params: dict[str, float] = field(default_factory=dict)
    camera: str | None = None
    frames: int | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.preset is not None:
            out["preset"] = self.preset
            if self.params:
                out["params"] = dict(self.params)
        if self.camera is not None:
            out["camera"] = self.camera
        if self.frames is not None:
            out["frames"] = self.frames
        return out


@dataclass(frozen=True)
class WorldPlan:
    """Named trajectories in rounds (see the module docstring for the file format).

    Attributes:
        rounds: the trajectories of each round, in plan order.
        frames: default frames per trajectory.
        root: folder relative camera files are read from (the plan file's folder).
    """

    rounds: tuple[tuple[Trajectory, ...], ...]
    frames: int = 21
    root: Path | None = None

    def __post_init__(self) -> None:
        validate(self)

    @property
    def trajectories(self) -> list[Trajectory]:
        """Every trajectory in plan order."""
        return [t for r in self.rounds for t in r]

    def frames_of(self, t: Trajectory) -> int:
        return t.frames if t.frames is not None else self.frames

    def preset_cameras(self, t: Trajectory, start_camera: CameraParameters, scene_depth: float) -> CameraParameters:
        """The cameras of preset trajectory ``t`` from ``start_camera``: its lengths times ``scene_depth``."""
        if t.preset is None:
            raise ValueError(f"trajectory {t.name!r} is a camera file, not a preset")
        params = {k: v * scene_depth if k in LENGTH_PARAMS else v for k, v in t.params.items()}
        return trajectory.preset(t.preset, start_camera, self.frames_of(t), scene_depth=scene_depth, **params)

    def camera_path(self, t: Trajectory) -> Path:
        """Where trajectory ``t``'s camera file is."""
        p = Path(t.camera or "")
        return p if p.is_absolute() or self.root is None else self.root / p

    def to_json(self) -> dict[str, Any]:
        return {"version": PLAN_VERSION, "frames": self.frames,
                "rounds": [[t.to_json() for t in r] for r in self.rounds]}

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``plan.json`` atomically."""
        return write_text_atomic(Path(path), json.dumps(self.to_json(), indent=1) + "\n")

    @classmethod
    def from_json(cls, data: Any, root: Path | None = None) -> WorldPlan:
        """A plan from parsed JSON; every problem is one :class:`PlanError`."""
        if not isinstance(data, dict):
            raise PlanError("a plan is a JSON object with 'rounds'")
        unknown = sorted(set(data) - {"version", "frames", "rounds"})
        if unknown:
            raise PlanError(f"unknown plan field(s) {unknown}; a plan has version, frames, rounds")
        if data.get("version", PLAN_VERSION) != PLAN_VERSION:
            raise PlanError(f"plan version {data.get('version')!r} is not supported (this reads version {PLAN_VERSION})")
        frames = _frames("the plan's frames", data.get("frames", 21))
        rounds = data.get("rounds")
        if not isinstance(rounds, list) or not rounds:
            raise PlanError("'rounds' must be a non-empty list of rounds (lists of trajectories)")
        out = []
        for r, items in enumerate(rounds):
            if not isinstance(items, list) or not items:
                raise PlanError(f"round {r + 1} must be a non-empty list of trajectories")
            out.append(tuple(_trajectory(f"round {r + 1} trajectory {i + 1}", t) for i, t in enumerate(items)))
        return cls(tuple(out), frames, root)

    @classmethod
    def load(cls, path: str | os.PathLike) -> WorldPlan:
        """Read and validate ``plan.json``."""
        p = Path(path)
        if not p.is_file():
            raise PlanError(f"plan file not found: {str(p)!r}")
        try:
            data = read_json_file(p, MAX_PLAN_BYTES, p.name)
        except ValueError as exc:
            raise PlanError(str(exc)) from None
        try:
            return cls.from_json(data, p.resolve().parent)
        except PlanError as exc:
            raise PlanError(f"{p.name}: {exc}") from None


def _frames(what: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_PATH_FRAMES:
        raise PlanError(f"{what} must be an integer from 1 to {MAX_PATH_FRAMES}, got {value!r}")
    return value


def _trajectory(where: str, t: Any) -> Trajectory:
    if not isinstance(t, dict):
        raise PlanError(f"{where} must be an object with 'name' and 'preset' or 'camera'")
    unknown = sorted(set(t) - {"name", "preset", "params", "camera", "frames"})
    if unknown:
        raise PlanError(f"{where}: unknown field(s) {unknown}")
    name = t.get("name")
    params = t.get("params", {})
    if not isinstance(params, dict):
        raise PlanError(f"{where}: 'params' must be an object of numbers")
    clean: dict[str, float] = {}
    for k, v in params.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise PlanError(f"{where}: parameter {k!r} must be a finite number, got {v!r}")
        clean[str(k)] = float(v)
    camera = t.get("camera")
    if camera is not None and (not isinstance(camera, str) or not camera):
        raise PlanError(f"{where}: 'camera' must be a file path")
    frames = t.get("frames")
    return Trajectory(name, t.get("preset"), clean, camera, None if frames is None else _frames(f"{where} frames", frames))


def validate(plan: WorldPlan) -> None:
    """Check a plan as the CLI would run it; raises :class:`PlanError` naming the first problem."""
    _frames("the plan's frames", plan.frames)
    if not plan.rounds or any(not r for r in plan.rounds):
        raise PlanError("a plan needs at least one round, and every round at least one trajectory")
    seen: set[str] = set()
    trajectories = [t for r in plan.rounds for t in r]
    if len(trajectories) > MAX_PLAN_TRAJECTORIES:
        raise PlanError(f"{len(trajectories)} trajectories; a plan holds at most {MAX_PLAN_TRAJECTORIES}")
    for t in trajectories:
        if not isinstance(t.name, str) or not _NAME.match(t.name):
            raise PlanError(f"trajectory name {t.name!r} must be 1-64 letters, digits, '_' or '-'")
        if t.name in seen:
            raise PlanError(f"trajectory name {t.name!r} is used twice")
        if t.name in RESERVED_NAMES:
            raise PlanError(f"trajectory name {t.name!r} is taken by the input views' files; choose another")
        seen.add(t.name)
        if (t.preset is None) == (t.camera is None):
            raise PlanError(f"trajectory {t.name!r} needs exactly one of 'preset' and 'camera'")
        if t.preset is not None:
            if t.preset not in trajectory.PRESETS:
                raise PlanError(f"trajectory {t.name!r}: unknown preset {t.preset!r}; valid presets: "
                                f"{', '.join(trajectory.list_presets())}")
            allowed = set(trajectory.PRESETS[t.preset].params)
            bad = sorted(set(t.params) - allowed)
            if bad:
                raise PlanError(f"trajectory {t.name!r}: preset {t.preset!r} has no parameter(s) {bad}; "
                                f"it takes {sorted(allowed)}")
        elif t.params:
            raise PlanError(f"trajectory {t.name!r}: 'params' go with a preset, not a camera file")
        if t.frames is not None:
            _frames(f"trajectory {t.name!r} frames", t.frames)


def panorama_plan(directions: int = 4, frames: int = 21, distance: float = 1.0) -> WorldPlan:
    """From a panorama's centre: a walk out and back along ``directions`` directions, evenly spread (one round).

    ``distance`` is in units of the panorama's median distance (the scene depth of a panorama start).
    """
    if isinstance(directions, bool) or not isinstance(directions, int) or not 1 <= directions <= MAX_PLAN_TRAJECTORIES:
        raise PlanError(f"directions must be an integer from 1 to {MAX_PLAN_TRAJECTORIES}, got {directions!r}")
    walks = tuple(
        Trajectory(f"walk_{round(360 * k / directions):03d}", "out_and_back",
                   {"yaw": 360.0 * k / directions, "distance": distance})
        for k in range(directions)
    )
    return WorldPlan((walks,), frames)


def photo_plan(frames: int = 21, trajectories: int | None = None) -> WorldPlan:
    """From a photo: the reference paths as presets, ``eloop`` first, then ``up``, ``right``, ``left`` in one round."""
    presets = [("eloop", "eloop", {"rx": 0.3, "ry": 0.4}), ("up", "orbit_up", {"angle": 15.0}),
               ("right", "orbit_right", {"angle": 30.0}), ("left", "orbit_left", {"angle": 30.0})]
    chosen = presets[: trajectories or len(presets)]
    first = (Trajectory(chosen[0][0], chosen[0][1], chosen[0][2]),)
    rest = tuple(Trajectory(n, p, q) for n, p, q in chosen[1:])
    return WorldPlan((first, rest) if rest else (first,), frames)


def example_plan(paths: list[tuple[str, Path]], frames: int | None = None) -> WorldPlan:
    """From an example folder: its official paths (``eloop`` first, then ``up``, ``right``, ``left`` in one round).

    Args:
        paths: (name, camera file) of each official path, in the reference order.
        frames: frames per path (None: every pose of each file).
    """
    items = [Trajectory(name, camera=str(path), frames=frames) for name, path in paths]
    rounds = (tuple(items[:1]), tuple(items[1:])) if len(items) > 1 else (tuple(items),)
    return WorldPlan(rounds, frames or 21)
