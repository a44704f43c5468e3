"""``oracle``: the ground truth of a procedural scene for the same cameras.

The reference for evaluation and for debugging memory behaviour against the truth. It reads no
memory; the pipeline still feeds its frames into both memories, so the memories can be inspected
as they would be under a perfect generator.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import torch

from worldstereo.backends.generators import FRAME_GENERATORS, FrameGenerator, FrameResult
from worldstereo.camera import CameraParameters
from worldstereo.geometry.splat import splat_points
from worldstereo.records import to_host

if TYPE_CHECKING:
    from worldstereo.context import GenerationContext
    from worldstereo.scenes import Scene


@FRAME_GENERATORS.register("oracle", "Ground truth of a procedural scene (needs a scene)")
class OracleGenerator(FrameGenerator):
    """Renders ``scene`` (a :class:`worldstereo.scenes.Scene`) for every target camera.

    Colours are anti-aliased (``antialias x antialias`` rays per pixel), like the scene's start view.
    """

    name = "oracle"

    def __init__(self, scene: Scene | None = None, antialias: int = 2) -> None:
        if scene is None:
            raise ValueError("the oracle generator needs a procedural scene (scene=...)")
        self.scene = scene
        self.antialias = antialias

    def generate_frame(self, ctx: GenerationContext, camera: CameraParameters, index: int) -> FrameResult:
        t0 = time.perf_counter()
        out = self.scene.render(camera.to(dtype=torch.float32), antialias=self.antialias)
        image, depth = out.image[0], out.depth[0]
        h, w = camera.height, camera.width
        timings = {"render": (time.perf_counter() - t0) * 1e3}
        # the GGM as it stands, for comparison with the truth and to find new surface
        if ctx.config.use_ggm and ctx.ggm.num_points > 0:
            t1 = time.perf_counter()
            r = to_host(splat_points(ctx.ggm.point_cloud, ctx.ggm.point_colors, camera))
            ggm_image, ggm_hole, ggm_ids = r.image[0], r.hole_mask[0], r.point_ids[0]
            new_surface = ggm_hole
            timings["ggm_render"] = (time.perf_counter() - t1) * 1e3
        else:
            ggm_image = torch.zeros(3, h, w)
            ggm_hole = torch.ones(1, h, w, dtype=torch.bool)
            new_surface = ggm_hole.clone()
            ggm_ids = None
        return FrameResult(
            image=image,
            depth=depth,
            confidence=(depth > 0).float(),
            ggm_render=ggm_image,
            ggm_hole_mask=ggm_hole,
            new_surface_mask=new_surface & (depth > 0),
            ggm_point_ids=ggm_ids,
            timings=timings,
        )
