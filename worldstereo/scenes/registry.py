"""Scene registry: ``list_scenes()`` and ``get_scene(name, seed)``."""

from __future__ import annotations

from worldstereo.scenes.base import Scene
from worldstereo.scenes.room import RoomScene
from worldstereo.scenes.tabletop import TabletopScene
from worldstereo.scenes.terrain import TerrainScene

__all__ = ["get_scene", "list_scenes", "scene_descriptions"]

_SCENES: dict[str, type[Scene]] = {cls.name: cls for cls in (RoomScene, TerrainScene, TabletopScene)}


def list_scenes() -> list[str]:
    """Names of the procedural scenes, in a fixed order."""
    return list(_SCENES)


def scene_descriptions() -> dict[str, str]:
    """Name -> one-line description."""
    return {name: cls.description for name, cls in _SCENES.items()}


def get_scene(name: str, seed: int = 0) -> Scene:
    """Build the scene ``name`` with texture ``seed``; ``ValueError`` listing the names if unknown."""
    if name not in _SCENES:
        raise ValueError(f"unknown scene {name!r}; choose from {', '.join(_SCENES)}")
    return _SCENES[name](seed=seed)
