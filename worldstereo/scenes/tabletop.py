"""``tabletop``: object-centric table-top scene inside a closed studio."""

from __future__ import annotations

import math

from worldstereo.scenes.base import Scene
from worldstereo.scenes.primitives import Box, Cylinder, Ellipsoid, Primitive, Quad, yaw_rotation
from worldstereo.scenes.textures import Bricks, Checker, Letters, Planks, SolidNoise, Stripes, Tiles, Wallpaper

__all__ = ["TabletopScene"]

# Local frame (y down): table top surface at y = 0, studio floor at y = FLOOR.
FLOOR, CEIL = 0.8, -2.2
HALF_X, Z_FRONT, Z_BACK = 2.6, -3.2, 1.9


class TabletopScene(Scene):
    """A wooden table with a letter block, a striped block, a patterned ball, a mug with a handle,
    a book and a striped vase, in front of a checkered backdrop, inside a closed studio (brick and
    wallpaper walls, tiled floor). The start camera looks down at the objects at ~30 degrees from
    2.6 units away. Scene depth ~2.6."""

    name = "tabletop"
    description = "object-centric table top: blocks with letters and stripes, a ball, a mug, a backdrop"
    light_direction = (-0.4, -1.0, -0.5)

    def _start_eye_target(self):
        return (0.0, -1.3, -1.6), (0.0, 0.0, 0.65)

    def _build(self) -> list[Primitive]:
        sd = self.texture_seed
        wx, wy, wz = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
        nx, nz = (-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
        cy, hy = 0.5 * (FLOOR + CEIL), 0.5 * (FLOOR - CEIL)
        cz, hz = 0.5 * (Z_FRONT + Z_BACK), 0.5 * (Z_BACK - Z_FRONT)
        prims: list[Primitive] = [
            Quad((0, cy, Z_BACK), nx, wy, HALF_X, hy, Checker(sd(), size=0.18)),  # backdrop, normal -z
            Quad((0, cy, Z_FRONT), wx, wy, HALF_X, hy, Bricks(sd())),  # front wall, +z
            Quad((HALF_X, cy, cz), wz, wy, hz, hy, Wallpaper(sd())),  # right wall, -x
            Quad((-HALF_X, cy, cz), nz, wy, hz, hy, Bricks(sd(), color=(0.55, 0.55, 0.6))),  # left wall, +x
            Quad((0, FLOOR, cz), wx, wz, HALF_X, hz, Tiles(sd(), color=(0.7, 0.65, 0.55), size=0.3)),  # floor
            Quad((0, CEIL, cz), wz, wx, hz, HALF_X, Tiles(sd())),  # ceiling, normal +y
        ]
        # table: a thick top and four legs
        wood = Planks(sd(), color=(0.6, 0.4, 0.22), width=0.14, length=1.6)
        prims.append(Box((0.0, 0.04, 0.6), (1.3, 0.04, 0.95), wood))
        leg_h = 0.5 * (FLOOR - 0.08)
        for dx in (-1.2, 1.2):
            for dz in (-0.25, 1.45):
                prims.append(Box((dx, FLOOR - leg_h, dz), (0.05, leg_h, 0.05), wood))
        # objects standing on the table (y = 0)
        prims.append(Box((-0.55, -0.2, 0.55), (0.2, 0.2, 0.2), Letters(sd()), yaw_rotation(0.45)))
        prims.append(Box((0.5, -0.15, 0.95), (0.15, 0.15, 0.15), Stripes(sd()), yaw_rotation(-0.6)))
        prims.append(Ellipsoid((0.02, -0.22, 0.2), 0.22,
                               Checker(sd(), (0.95, 0.3, 0.2), (0.95, 0.95, 0.85), size=0.06)))
        prims.append(Cylinder((0.68, -0.16, 0.25), 0.12, 0.16,
                              Stripes(sd(), palette=((0.2, 0.5, 0.75), (0.95, 0.95, 0.92)), period=0.03,
                                      angle=math.pi / 2)))
        prims.append(Box((0.83, -0.16, 0.25), (0.035, 0.08, 0.02), SolidNoise(sd(), (0.2, 0.5, 0.75),
                                                                                (0.1, 0.3, 0.5))))
        prims.append(Box((-0.2, -0.03, 1.05), (0.3, 0.03, 0.21),
                         Stripes(sd(), palette=((0.15, 0.25, 0.5), (0.85, 0.8, 0.6), (0.6, 0.1, 0.15)),
                                 period=0.025, angle=0.0), yaw_rotation(0.2)))
        prims.append(Cylinder((-0.95, -0.3, 1.15), 0.1, 0.3,
                              Stripes(sd(), palette=((0.3, 0.6, 0.4), (0.9, 0.85, 0.5), (0.5, 0.2, 0.4)),
                                      period=0.04, angle=0.9)))
        return prims
