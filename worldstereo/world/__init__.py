"""Worlds: a plan of trajectories in rounds (:mod:`.plan`), run through one set of memories
(:mod:`.rounds`, :mod:`.runner`), exported as one point cloud and a 3DGS-ready dataset (:mod:`.dataset`)."""

from worldstereo.world.plan import PlanError, Trajectory, WorldPlan, example_plan, panorama_plan, photo_plan
from worldstereo.world.runner import WorldError, WorldSummary, build_world

__all__ = [
    "PlanError",
    "Trajectory",
    "WorldError",
    "WorldPlan",
    "WorldSummary",
    "build_world",
    "example_plan",
    "panorama_plan",
    "photo_plan",
]
