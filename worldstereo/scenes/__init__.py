"""Procedural 3D scenes with exact ground truth (image, depth, surface) for demos, tests and evaluation.

Usage::

    scene = get_scene("room", seed=0)         # "room", "terrain" or "tabletop" (list_scenes())
    view = scene.start_view(512, 384)         # image (1, 3, H, W), depth (1, 1, H, W), camera 0
    out = scene.render(cameras)               # SceneRender for any CameraParameters batch (world frame)
    gt = scene.sample_surface(200_000)        # area-uniform points, colours, normals (world frame)
    scale = scene.scene_depth                 # median start-view depth, to scale camera paths

World frame: camera 0 at the origin with the identity world-to-camera pose (OpenCV axes);
``scene.up`` is the world up vector. Depth 0 (``hit_mask`` False) only where a ray sees the
terrain's sky; the room and the table-top studio are closed. The seed changes textures only.
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
