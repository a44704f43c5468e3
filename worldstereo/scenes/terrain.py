"""``terrain``: an outdoor valley with rolling grass, rocks and trees under a sky at infinity."""

from __future__ import annotations

import torch

from worldstereo.scenes.base import Scene
from worldstereo.scenes.primitives import Cylinder, Ellipsoid, HeightField, Primitive, WaveTerrain
from worldstereo.scenes.textures import Bark, Foliage, Grass, Rock

__all__ = ["TerrainScene"]

# Smooth valley: the ground rises ahead (z) and to the sides (x), so most rays of views near the
# start camera hit ground; the sky shows only above the far ridge.
_TERRAIN = WaveTerrain(
    base=1.6,
    bowl_x=0.03,
    bowl_z=0.028,
    z0=-2.0,
    waves=(
        (0.18, 0.8, 0.3, 0.4),
        (0.14, -0.5, 0.9, 1.9),
        (0.06, 1.9, -1.3, 0.7),
        (0.03, 3.1, 2.7, 2.2),
    ),
)
_X_RANGE, _Z_RANGE = (-12.0, 12.0), (-7.0, 15.0)

# (x, z, radii) of rocks and (x, z, trunk height, canopy radius) of trees, local frame
_ROCKS = ((-1.4, 3.2, (0.45, 0.3, 0.4)), (1.7, 4.6, (0.6, 0.4, 0.5)), (0.3, 6.8, (0.5, 0.35, 0.6)),
          (-3.2, 6.5, (0.7, 0.5, 0.6)), (2.6, 2.4, (0.3, 0.2, 0.25)))
_TREES = ((3.1, 7.2, 1.4, 0.9), (-2.4, 5.0, 1.2, 0.8), (4.8, 10.5, 1.6, 1.1), (-5.0, 9.5, 1.5, 1.0),
          (0.8, 10.0, 1.3, 0.9))


def ground_y(x: float, z: float) -> float:
    """Ground height (local y, down) at (x, z)."""
    return float(_TERRAIN.height(torch.tensor(x), torch.tensor(z)))


class TerrainScene(Scene):
    """A grassy valley (height field, rock on steep slopes) with five rocks and five trees.

    The sky is a background at infinity: depth 0 (unknown), ``hit_mask`` False, colour a
    horizon-to-zenith gradient of the ray direction only (so it is consistent under camera
    translation too). The start camera stands 1.6 above the valley floor looking ahead and down
    ~11 degrees; the ridge fills the top of the start view. Scene depth ~6.
    """

    name = "terrain"
    description = "outdoor grassy valley with rocks and trees, sky at infinity (depth 0)"
    light_direction = (0.45, -1.0, -0.35)
    ambient = 0.4

    def _start_eye_target(self):
        return (0.0, 0.0, 0.0), (0.0, 0.55, 5.0)

    def _build(self) -> list[Primitive]:
        sd = self.texture_seed
        prims: list[Primitive] = [HeightField(_TERRAIN, _X_RANGE, _Z_RANGE, Grass(sd()))]
        for x, z, radii in _ROCKS:
            # sunk by a third of its height into the ground
            prims.append(Ellipsoid((x, ground_y(x, z) - 0.6 * radii[1], z), radii, Rock(sd())))
        for x, z, height, canopy in _TREES:
            g = ground_y(x, z)
            prims.append(Cylinder((x, g - 0.5 * height + 0.1, z), 0.12, 0.5 * height + 0.1, Bark(sd())))
            prims.append(Ellipsoid((x, g - height - 0.6 * canopy, z), (canopy, 1.2 * canopy, canopy), Foliage(sd())))
        return prims
