"""WorldStereo Explorer: camera-guided, memory-consistent scene exploration (arXiv 2603.02049).

The public API (API.md): :class:`GlobalGeometricMemory`, :class:`SpatialStereoMemory`,
:class:`CameraParameters`, the :class:`WorldStereo` model and its inference API
(``start`` / ``generate`` -> :class:`Step`). The library never imports gradio or viser.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from worldstereo.camera import CameraParameters, Rays
    from worldstereo.memory import GlobalGeometricMemory, SpatialStereoMemory
    from worldstereo.model import StartInfo, WorldStereo, WorldStereoConfig
    from worldstereo.pipeline import MemoryStats, Step

#: public name -> the module that defines it; imported on first use, so that ``import worldstereo.cli.batch``
#: (a batch's driver, which only schedules tasks) does not pay for torch
_PUBLIC = {
    "CameraParameters": "worldstereo.camera", "Rays": "worldstereo.camera",
    "GlobalGeometricMemory": "worldstereo.memory", "SpatialStereoMemory": "worldstereo.memory",
    "StartInfo": "worldstereo.model", "WorldStereo": "worldstereo.model", "WorldStereoConfig": "worldstereo.model",
    "MemoryStats": "worldstereo.pipeline", "Step": "worldstereo.pipeline",
}

__all__ = [
    "CameraParameters",
    "GlobalGeometricMemory",
    "MemoryStats",
    "Rays",
    "SpatialStereoMemory",
    "StartInfo",
    "Step",
    "WorldStereo",
    "WorldStereoConfig",
]


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value
        return value
    try:  # a submodule (``worldstereo.camera`` after ``import worldstereo``, as when everything was imported eagerly)
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError as exc:
        if exc.name != f"{__name__}.{name}":
            raise
    raise AttributeError(f"module 'worldstereo' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))


__version__ = "0.1.0"
