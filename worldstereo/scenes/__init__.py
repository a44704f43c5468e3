"""Procedural 3D scenes with exact ground truth (image, depth, surface) for demos, tests and evaluation.

>>> scene = get_scene("room", seed=0)
>>> view = scene.start_view(512, 384)        # image (1, 3, H, W), depth (1, 1, H, W), camera 0
>>> out = scene.render(cameras)              # any batch of CameraParameters in the scene's world frame
>>> gt = scene.sample_surface(200_000)       # area-uniform points, colours, normals (world frame)
"""

from worldstereo.scenes.base import Scene, SceneRender, SceneView, SurfaceSample
from worldstereo.scenes.registry import get_scene, list_scenes, scene_descriptions
from worldstereo.scenes.room import RoomScene
from worldstereo.scenes.tabletop import TabletopScene
from worldstereo.scenes.terrain import TerrainScene

__all__ = [
    "RoomScene",
    "Scene",
    "SceneRender",
    "SceneView",
    "SurfaceSample",
    "TabletopScene",
    "TerrainScene",
    "get_scene",
    "list_scenes",
    "scene_descriptions",
]
