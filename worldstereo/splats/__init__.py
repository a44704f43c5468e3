"""3D Gaussian splats of a world: made from the memories without training (:mod:`.surfels`), written and read as
standard files (:mod:`.files`), rendered by a slow exact reference (:mod:`.render`); where they come from
(:mod:`.sources`) and the GPU fit (:mod:`.fit`) sit above the model.
"""

from worldstereo.splats.files import SPLAT_FORMATS, read_splats, write_splats
from worldstereo.splats.gaussians import Gaussians
from worldstereo.splats.render import SplatRender, render_splats
from worldstereo.splats.surfels import DEFAULT_MAX_SPLATS, SurfelInfo, surfels_from_points

__all__ = [
    "DEFAULT_MAX_SPLATS",
    "SPLAT_FORMATS",
    "Gaussians",
    "SplatRender",
    "SurfelInfo",
    "read_splats",
    "render_splats",
    "surfels_from_points",
    "write_splats",
]
