"""SSM constrained attention: 4096 queries over a full bank of 1024 entries x 64 correspondences.

Scene: a tilted plane seen by four keyframe cameras (16 x 16 tokens of 32 x 32 pixels each, 8 x 8
correspondences per token on the surface, confidences uniform in [0.3, 1] so ~30 % are ignored)
and by a query camera close to them (64 x 64 query points on the surface, 8-pixel pitch), all
512 x 512. Every query may attend to some entries: 6.4 of the 1024 on average (0.6 % of the
pairs), the keyframe tokens around its surface point.

Ours: ``SpatialStereoMemory.constrained_attention`` with the correspondence mask (projections,
mask, softmax, output, weights, usage bookkeeping). Reference: torch SDPA of the same queries
over all 1024 entries without a mask (no weights returned).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from benchmarks.common import BenchResult, time_ms
from worldstereo.camera import CameraParameters
from worldstereo.memory.spatial_stereo import SpatialStereoMemory

SIZE = 512
TOKEN = 32  # keyframe token patch, pixels
QUERY_PITCH = 8  # query grid pitch, pixels
FEATURE_DIM = 768
# The plane n . X = d, with X in world coordinates (OpenCV world: camera 0 at the origin looking +z).
PLANE_NORMAL = torch.tensor([0.25, -0.2, 1.0])
PLANE_OFFSET = 4.0


def _surface_points(camera: CameraParameters, uv: torch.Tensor) -> torch.Tensor:
    """(P, 2) pixel coordinates of one camera -> (P, 3) world points where their rays meet the plane."""
    K, c2w = camera.intrinsics[0], camera.c2w[0]
    x = (uv[:, 0] - K[0, 2]) / K[0, 0]
    y = (uv[:, 1] - K[1, 2]) / K[1, 1]
    d = torch.stack([x, y, torch.ones_like(x)], -1) @ c2w[:3, :3].T
    o = c2w[:3, 3]
    t = (PLANE_OFFSET - PLANE_NORMAL @ o) / (d @ PLANE_NORMAL)
    return o + t[:, None] * d


def build_scene(seed: int = 0) -> tuple[SpatialStereoMemory, torch.Tensor, torch.Tensor, CameraParameters]:
    """A full memory of 4 keyframes and the query (features, points, camera) of a fifth view."""
    g = torch.Generator().manual_seed(seed)
    memory = SpatialStereoMemory(memory_size=1024, feature_dim=FEATURE_DIM, num_correspondences=64, attention_window=7)
    target = (0.0, 0.0, 4.0)
    grid = SIZE // TOKEN
    sub = torch.arange(8, dtype=torch.float32) * (TOKEN / 8) + TOKEN / 16  # 8 samples per token side
    su, sv = torch.meshgrid(sub, sub, indexing="xy")
    offsets = torch.stack([su.reshape(-1), sv.reshape(-1)], -1)  # (64, 2)
    tv, tu = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    corners = torch.stack([tu.reshape(-1), tv.reshape(-1)], -1).float() * TOKEN  # (256, 2) token corners
    for frame, eye in enumerate([(-0.4, -0.3, 0.0), (0.4, -0.3, 0.1), (-0.4, 0.3, 0.1), (0.4, 0.3, 0.0)]):
        cam = CameraParameters.look_at(eye, target, width=SIZE, height=SIZE)
        uv = (corners[:, None, :] + offsets[None]).reshape(-1, 2)
        corr = _surface_points(cam, uv).reshape(grid * grid, 64, 3)
        conf = 0.3 + 0.7 * torch.rand(grid * grid, 64, generator=g)
        feats = torch.randn(grid * grid, FEATURE_DIM, generator=g)
        boxes = torch.cat([corners, corners + TOKEN], -1)
        memory.add_to_memory(feats, corr, conf, metadata={"frame_index": frame, "camera": cam, "pixel_boxes": boxes})
    query_cam = CameraParameters.look_at((0.05, 0.0, 0.3), target, width=SIZE, height=SIZE)
    q = torch.arange(SIZE // QUERY_PITCH, dtype=torch.float32) * QUERY_PITCH + QUERY_PITCH / 2
    qu, qv = torch.meshgrid(q, q, indexing="xy")
    query_points = _surface_points(query_cam, torch.stack([qu.reshape(-1), qv.reshape(-1)], -1))[None]
    query = torch.randn(1, query_points.shape[1], FEATURE_DIM, generator=g)
    return memory, query, query_points, query_cam


def run() -> BenchResult:
    memory, query, query_points, camera = build_scene()
    bank = memory.memory_bank
    q4, kv = query[:, None], bank[None, None]

    def ours() -> None:
        memory.constrained_attention(query, query_points, camera)

    def reference() -> None:
        F.scaled_dot_product_attention(q4, kv, kv, scale=1.0 / math.sqrt(FEATURE_DIM))

    with torch.no_grad():
        t_ours = time_ms(ours)
        t_ref = time_ms(reference)
    return BenchResult(
        name="ssm_attention",
        value=t_ours,
        unit="ms",
        reference="dense scaled_dot_product_attention",
        reference_value=t_ref,
        ratio=t_ref / t_ours,
        aim_max=40.0,
        aim="<= 40 ms",
    )


if __name__ == "__main__":
    print(run().line())
