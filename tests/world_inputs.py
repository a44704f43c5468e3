"""Inputs of the world command's tests: the room scene's start view as a photo, and a plan of one round of two
orbits (a round that can run in parallel)."""

from __future__ import annotations

import json
from pathlib import Path

from worldstereo.exports import write_image_png
from worldstereo.scenes import get_scene


def room_photo_and_two_walk_plan(folder: Path, width: int, height: int, frames: int, angle: float
                                 ) -> tuple[Path, Path]:
    """``folder/room.png`` and ``folder/plan.json`` (trajectories ``a`` orbiting left and ``b`` right by ``angle``
    degrees, ``frames`` each, in one round); returns their paths."""
    view = get_scene("room").start_view(width, height)
    image = folder / "room.png"
    write_image_png(image, (view.image[0].permute(1, 2, 0) * 255).byte().numpy())
    plan = folder / "plan.json"
    plan.write_text(json.dumps({"version": 1, "frames": frames, "rounds": [[
        {"name": "a", "preset": "orbit_left", "params": {"angle": angle}},
        {"name": "b", "preset": "orbit_right", "params": {"angle": angle}}]]}))
    return image, plan
