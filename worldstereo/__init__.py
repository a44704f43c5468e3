"""WorldStereo Explorer: camera-guided, memory-consistent scene exploration (arXiv 2603.02049).

The library never imports gradio or viser; those live in ``ui/``.
"""

from worldstereo.camera import CameraParameters, Rays

__all__ = ["CameraParameters", "Rays"]
__version__ = "0.1.0"
