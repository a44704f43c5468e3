"""``room``: a closed indoor room with furniture (fully enclosed: every ray from inside hits)."""

from __future__ import annotations

import math

from worldstereo.scenes.base import Scene
from worldstereo.scenes.primitives import Box, Cylinder, Ellipsoid, Primitive, Quad, yaw_rotation
from worldstereo.scenes.textures import (
    Bricks,
    Checker,
    Letters,
    Painting,
    Planks,
    SolidNoise,
    Stripes,
    Tiles,
    Wallpaper,
)

__all__ = ["RoomScene"]

# Local frame (y down): floor at y = FLOOR, ceiling at y = CEIL, walls at x = +-HALF_X, z = Z_FRONT / Z_BACK.
FLOOR, CEIL = 1.5, -1.3
HALF_X, Z_FRONT, Z_BACK = 2.6, -2.2, 3.4


class RoomScene(Scene):
    """A 5.2 x 2.8 x 5.6 room: brick back wall, wallpapered side walls, plank floor, tiled ceiling, a
    rug, a table, a cabinet with a sphere lamp, stacked crates, a bench, a hanging lamp and a
    picture. The start camera stands 1.5 above the floor near the front-left, looking towards the
    back-right corner, so that orbits and sideways moves uncover floor and wall behind the
    furniture. Scene depth ~3.6."""

    name = "room"
    description = "indoor room with furniture, brick/wallpaper walls and a plank floor (fully enclosed)"

    def _start_eye_target(self):
        return (-1.1, 0.0, -1.3), (1.0, 0.6, 2.6)

    def _build(self) -> list[Primitive]:
        sd = self.texture_seed
        wx, wy, wz = (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)
        nx, nz = (-1.0, 0.0, 0.0), (0.0, 0.0, -1.0)
        cy, hy = 0.5 * (FLOOR + CEIL), 0.5 * (FLOOR - CEIL)
        cz, hz = 0.5 * (Z_FRONT + Z_BACK), 0.5 * (Z_BACK - Z_FRONT)
        prims: list[Primitive] = [
            # walls (normals point into the room: axis_u x axis_v)
            Quad((0, cy, Z_BACK), nx, wy, HALF_X, hy, Bricks(sd())),  # back wall, normal -z
            Quad((0, cy, Z_FRONT), wx, wy, HALF_X, hy, Bricks(sd(), color=(0.7, 0.62, 0.5))),  # front, +z
            Quad((HALF_X, cy, cz), wz, wy, hz, hy, Wallpaper(sd())),  # right wall, normal -x
            Quad((-HALF_X, cy, cz), nz, wy, hz, hy,  # left wall, normal +x
                 Wallpaper(sd(), color_a=(0.6, 0.72, 0.82), color_b=(0.9, 0.88, 0.8), accent=(0.2, 0.35, 0.6))),
            Quad((0, FLOOR, cz), wx, wz, HALF_X, hz, Planks(sd())),  # floor, normal -y (up)
            Quad((0, CEIL, cz), wz, wx, hz, HALF_X, Tiles(sd())),  # ceiling, normal +y (down)
            # rug just above the floor
            Quad((0.1, FLOOR - 0.004, 1.1), wx, wz, 0.8, 1.1,
                 Stripes(sd(), palette=((0.7, 0.15, 0.15), (0.9, 0.8, 0.55), (0.15, 0.3, 0.5)), period=0.09,
                         angle=0.0)),
        ]
        # table: top and four legs
        table_wood = Planks(sd(), color=(0.45, 0.28, 0.14), width=0.12, length=1.3)
        top_y = 0.72
        prims.append(Box((0.2, top_y + 0.03, 1.4), (0.6, 0.03, 0.4), table_wood))
        leg_h = 0.5 * (FLOOR - (top_y + 0.06))
        for dx in (-0.54, 0.54):
            for dz in (-0.34, 0.34):
                prims.append(Box((0.2 + dx, FLOOR - leg_h, 1.4 + dz), (0.035, leg_h, 0.035), table_wood))
        # objects on the table: a letter block and a bowl-like sphere
        prims.append(Box((0.0, top_y - 0.11, 1.3), (0.11, 0.11, 0.11), Letters(sd()), yaw_rotation(0.5)))
        prims.append(Ellipsoid((0.5, top_y - 0.09, 1.5), (0.16, 0.09, 0.16),
                               Checker(sd(), (0.95, 0.95, 0.9), (0.2, 0.45, 0.3), size=0.04)))
        # cabinet against the right wall, a sphere lamp on it
        prims.append(Box((HALF_X - 0.36, 0.9, 2.3), (0.35, 0.6, 0.55), Planks(sd(), color=(0.35, 0.22, 0.12),
                                                                             width=0.2, length=0.55)))
        prims.append(Ellipsoid((HALF_X - 0.4, 0.3 - 0.2, 2.45), 0.2,
                               SolidNoise(sd(), (0.95, 0.9, 0.7), (0.85, 0.55, 0.3), scale=12.0, speckle=0.4)))
        # crates at the back-left
        crate = Planks(sd(), color=(0.65, 0.5, 0.3), width=0.1, length=0.5)
        prims.append(Box((-1.7, FLOOR - 0.28, 2.8), (0.28, 0.28, 0.28), crate, yaw_rotation(0.15)))
        prims.append(Box((-1.65, FLOOR - 0.56 - 0.2, 2.75), (0.2, 0.2, 0.2), Letters(sd()), yaw_rotation(-0.35)))
        # bench along the left wall
        prims.append(Box((-2.15, FLOOR - 0.22, 0.8), (0.32, 0.22, 0.75),
                         SolidNoise(sd(), (0.25, 0.3, 0.5), (0.5, 0.55, 0.75), scale=9.0)))
        # hanging lamp above the table
        lamp_y = -0.45
        prims.append(Cylinder((0.2, 0.5 * (CEIL + lamp_y), 1.4), 0.015, 0.5 * (lamp_y - CEIL),
                              SolidNoise(sd(), (0.1, 0.1, 0.1), (0.3, 0.3, 0.3))))
        prims.append(Ellipsoid((0.2, lamp_y + 0.16, 1.4), 0.17,
                               Stripes(sd(), palette=((0.95, 0.92, 0.75), (0.9, 0.6, 0.25)), period=0.035,
                                       angle=math.pi / 2)))
        # picture frame on the back wall
        prims.append(Box((-0.4, -0.15, Z_BACK - 0.03), (0.55, 0.38, 0.03),
                         Planks(sd(), color=(0.25, 0.18, 0.1), width=0.05, length=0.3)))
        prims.append(Quad((-0.4, -0.15, Z_BACK - 0.065), nx, wy, 0.47, 0.3, Painting(sd())))
        return prims
