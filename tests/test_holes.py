"""Depth continuation into holes: extended pixels lie on the surface of the background side."""

from __future__ import annotations

import math

import torch

from worldstereo.camera import CameraParameters
from worldstereo.geometry.holes import extend_depth_background


def _floor_depth(camera: CameraParameters, height: float = 1.0) -> torch.Tensor:
    """(1, H, W) depth of the plane y = ``height`` (OpenCV: y down, so a floor) seen by an identity-pose camera."""
    dirs = camera.unproject(torch.ones(1, 1, camera.height, camera.width))[0]  # points at z = 1
    y = dirs[..., 1]
    return torch.where(y > 1e-3, height / y.clamp(min=1e-3), torch.full_like(y, 100.0)).unsqueeze(0)


def _on_floor(camera: CameraParameters, depth: torch.Tensor, mask: torch.Tensor, height: float = 1.0) -> torch.Tensor:
    """|y - height| of the unprojected pixels under ``mask``, relative to the height."""
    pts = camera.unproject(depth.unsqueeze(0))[0]
    return (pts[..., 1][mask[0]] - height).abs() / height


def test_a_floor_running_out_of_the_known_area_keeps_its_plane():
    cam = CameraParameters.from_fov(math.radians(60), 128, 96)
    depth = _floor_depth(cam)
    hole = torch.zeros(1, 96, 128, dtype=torch.bool)
    hole[0, 72:, :] = True  # the bottom of the frame (nearest floor) is unknown
    floor_rows = torch.zeros_like(hole)
    floor_rows[0, 60:72, :] = True
    assert float(_on_floor(cam, depth, floor_rows).max()) < 1e-4  # the fixture is a floor

    continued = extend_depth_background(depth, hole)
    copied = extend_depth_background(depth, hole, slope=False)
    assert torch.equal(continued[~hole], depth[~hole])  # known depth untouched
    err = _on_floor(cam, continued, hole)
    assert float(err.median()) < 0.02 and float(err.max()) < 0.1
    # copying the seed's depth turns the floor into a wall: far off the plane near the bottom
    assert float(_on_floor(cam, copied, hole).median()) > 0.1
    assert float(continued[hole].min()) < float(copied[hole].min())  # the floor comes nearer


def test_a_disocclusion_continues_the_background_not_the_occluder():
    cam = CameraParameters.from_fov(math.radians(60), 128, 96)
    depth = _floor_depth(cam).clone()
    depth[0, 50:, 20:50] = 1.2  # a box in front of the floor
    hole = torch.zeros(1, 96, 128, dtype=torch.bool)
    hole[0, 55:90, 50:62] = True  # revealed beside it
    out = extend_depth_background(depth, hole)
    assert float(_on_floor(cam, out, hole).median()) < 0.05
    assert bool((out[hole] > 1.3).all())  # never the occluder's depth


def test_a_fronto_parallel_wall_stays_flat_and_depth_stays_bounded():
    wall = torch.full((1, 64, 80), 3.0)
    hole = torch.zeros(1, 64, 80, dtype=torch.bool)
    hole[0, 20:40, 30:50] = True
    assert torch.allclose(extend_depth_background(wall, hole), wall)
    # a steep ramp cannot run away: at most 3x nearer or farther than its seed
    ramp = torch.linspace(1.0, 20.0, 80).view(1, 1, 80).expand(1, 64, 80).clone()
    hole = torch.zeros(1, 64, 80, dtype=torch.bool)
    hole[0, :, 40:] = True
    out = extend_depth_background(ramp, hole)
    seed = float(ramp[0, 0, 39])
    assert float(out[hole].max()) <= 3.0 * seed + 1e-4 and float(out[hole].min()) >= seed / 3.0 - 1e-4


def test_blend_views_keeps_far_single_views_and_mixes_equal_ones():
    from worldstereo.backends.warp import blend_views

    red, blue = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 0.0, 1.0])
    nan = torch.full((3,), float("nan"))
    colors = torch.stack([torch.stack([red, red, red, nan, red]), torch.stack([blue, blue, nan, blue, blue])])
    scores = torch.tensor([[1e-30, 0.5, 0.9, 0.0, 0.0], [0.0, 0.5, 0.0, 0.8, 0.0]])
    mixed, have = blend_views(scores, colors)
    assert have.tolist() == [True, True, True, True, False]
    assert torch.allclose(mixed[0], red)  # the only view, however far (tiny score), is not lost to underflow
    assert torch.allclose(mixed[1], (red + blue) / 2)  # equal scores: an even mix, no seam
    assert torch.allclose(mixed[2], red) and torch.allclose(mixed[3], blue)  # NaN of a view with score 0 is ignored
    assert not bool(torch.isnan(mixed).any())
    clear, _ = blend_views(torch.tensor([[0.9], [0.6]]), torch.stack([red.view(1, 3), blue.view(1, 3)]))
    assert float(clear[0, 0]) > 0.99  # a clearly better view dominates


def _sparse_render(seed: int, h: int = 60, w: int = 80):
    """A render with pinholes, thin cracks, a wide hole and a step in depth (foreground on the left)."""
    g = torch.Generator().manual_seed(seed)
    image = torch.rand(3, h, w, generator=g)
    col = torch.arange(w)[None, None, :]
    depth = torch.where(col < 39, 2.0, torch.where(col < 45, 2.2, 5.0)).expand(1, h, w).clone()  # 10% and 2.3x steps
    depth = depth * (1.0 + 0.01 * torch.rand(1, h, w, generator=g))
    hole = torch.rand(1, h, w, generator=g) < 0.08  # pinholes
    hole[:, 20, :] = True  # a one-pixel crack across
    hole[:, :, 37:39] = True  # a two-pixel crack down, beside the depth step
    hole[:, 40:55, 5:25] = True  # too wide for a thin gap
    hole[:, 0, :5] = True  # at the border
    return image, torch.where(hole, torch.zeros_like(depth), depth), hole


def test_thin_gaps_on_the_device_equal_the_opencv_version():
    from worldstereo.geometry.holes import fill_thin_gaps, thin_gap_mask
    from worldstereo.geometry.holes_torch import fill_thin_gaps_torch, thin_gap_mask_torch

    for seed in range(3):
        image, depth, hole = _sparse_render(seed)
        for max_gap in (1, 2):
            assert torch.equal(thin_gap_mask_torch(hole, max_gap), thin_gap_mask(hole, max_gap))
            ref = fill_thin_gaps(image, depth, hole, max_gap)
            got = fill_thin_gaps_torch(image, depth, hole, max_gap)
            assert torch.equal(got[2], ref[2])  # the same holes left
            assert int(hole.sum() - ref[2].sum()) > 100  # and many filled
            torch.testing.assert_close(got[1], ref[1], rtol=1e-6, atol=1e-6)
            torch.testing.assert_close(got[0], ref[0], rtol=1e-5, atol=1e-5)
    # nothing thin: returned as given
    image, depth, _ = _sparse_render(0)
    none = torch.zeros(1, 60, 80, dtype=torch.bool)
    out = fill_thin_gaps_torch(image, depth, none)
    assert out[0] is image and out[1] is depth
