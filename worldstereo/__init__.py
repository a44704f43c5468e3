"""WorldStereo Explorer: camera-guided, memory-consistent scene exploration (arXiv 2603.02049).

The public API (API.md): :class:`GlobalGeometricMemory`, :class:`SpatialStereoMemory`,
:class:`CameraParameters`, the :class:`WorldStereo` model and its inference API
(``start`` / ``generate`` -> :class:`Step`). The library never imports gradio or viser.
"""

from worldstereo.camera import CameraParameters, Rays
from worldstereo.memory import GlobalGeometricMemory, SpatialStereoMemory
from worldstereo.model import StartInfo, WorldStereo, WorldStereoConfig
from worldstereo.pipeline import MemoryStats, Step

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
__version__ = "0.1.0"
