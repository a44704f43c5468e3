"""Synthetic panoramas with ground truth: a procedural scene ray-cast per direction from a centre.

The panorama's world frame is the equirectangular convention's (world up +Z, centre column along
-X; :mod:`worldstereo.panorama.equirect`); :attr:`SyntheticPanorama.world_from_pano` maps it to the
scene's world frame, so any camera of the panorama frame can be rendered exactly by the scene
(:meth:`SyntheticPanorama.scene_cameras`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.panorama.equirect import pixel_to_direction
from worldstereo.scenes import Scene, get_scene

__all__ = ["PANORAMA_CENTRES", "SyntheticPanorama", "render_panorama"]

#: where a scene's panorama is taken from (local frame, y down) and which local direction view 0000
#: faces: the room's centre at eye height (1.5 above the floor), facing its brick back wall
PANORAMA_CENTRES: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "room": ((0.0, 0.0, 0.6), (0.0, 0.0, 1.0)),
}


@dataclass
class SyntheticPanorama:
    """An exact equirectangular render of a procedural scene.

    Attributes:
        image: (H, W, 3) uint8, anti-aliased (each pixel averages a 2 x 2 grid of rays).
        range: (H, W) float32 distance from the centre along each pixel's central ray (0 = sky).
        scene: the scene's name; seed: its texture seed.
        world_from_pano: (4, 4) float64 map from panorama-frame points to the scene's world frame.
    """

    image: np.ndarray
    range: np.ndarray
    scene: str
    seed: int
    world_from_pano: torch.Tensor

    def scene_cameras(self, cameras: CameraParameters) -> CameraParameters:
        """Cameras of the panorama frame -> the same cameras in the scene's world frame (for ``Scene.render``)."""
        E = cameras.w2c.double() @ torch.linalg.inv(self.world_from_pano)
        E[:, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=E.dtype)
        return CameraParameters(cameras.K.double(), E, cameras.width, cameras.height)


def _world_from_pano(scene: Scene, centre: tuple[float, float, float], facing: tuple[float, float, float]) -> torch.Tensor:
    """Panorama frame (Z up, view 0000 along -X, +Y to its right) -> scene world frame, (4, 4) float64."""
    up_l = np.array([0.0, -1.0, 0.0])  # local frames are y down
    f = np.asarray(facing, np.float64)
    f = f - (f @ up_l) * up_l
    f /= np.linalg.norm(f)
    right = np.cross(f, up_l)  # a viewer facing f with up up_l has this on its right (OpenCV x = down x forward)
    # columns: where the panorama's +X, +Y, +Z go in the local frame (+X = -forward, +Y = right, +Z = up)
    R_lp = np.stack([-f, right, up_l], axis=1)
    R_wl = scene.R_world_local.double().numpy()
    t_wl = scene.t_world_local.double().numpy()
    T = np.eye(4)
    T[:3, :3] = R_wl @ R_lp
    T[:3, 3] = R_wl @ np.asarray(centre, np.float64) + t_wl
    return torch.from_numpy(T)


def render_panorama(name: str = "room", width: int = 1024, seed: int = 0, antialias: int = 2) -> SyntheticPanorama:
    """Ray-cast scene ``name`` into a ``width x width/2`` panorama from its :data:`PANORAMA_CENTRES` entry.

    Raises:
        ValueError: a scene without a panorama centre, or a width that is not even and >= 64.
    """
    if name not in PANORAMA_CENTRES:
        raise ValueError(f"no panorama centre for scene {name!r}; scenes with one: {', '.join(PANORAMA_CENTRES)}")
    if width < 64 or width % 2:
        raise ValueError(f"panorama width must be even and at least 64, got {width}")
    scene = get_scene(name, seed=seed)
    T = _world_from_pano(scene, *PANORAMA_CENTRES[name])
    height = width // 2
    R = T[:3, :3].float()
    origin = T[:3, 3].float()

    def trace(s: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = np.meshgrid((np.arange(width * s) + 0.5) / s, (np.arange(height * s) + 0.5) / s)
        d = torch.from_numpy(pixel_to_direction(xs, ys, width, height).reshape(-1, 3)).float() @ R.T
        dist, col = scene.trace(origin.expand_as(d), d)
        return dist.reshape(height * s, width * s), col.reshape(height * s, width * s, 3)

    dist, col = trace(1)
    if antialias > 1:
        _, fine = trace(antialias)
        col = torch.nn.functional.avg_pool2d(fine.permute(2, 0, 1).unsqueeze(0), antialias)[0].permute(1, 2, 0)
    image = (col.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).numpy()
    return SyntheticPanorama(image, dist.numpy().astype(np.float32), name, seed, T)
