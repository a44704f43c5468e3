"""Depth -> points (floater filter, far contraction) and frustum overlap / view angle.

The splat renderer has its own file, tests/test_splat.py; the round trip through both is here.
"""

from __future__ import annotations

import math

import pytest
import torch

from worldstereo.camera import CameraParameters
from worldstereo.geometry import (
    DepthPoints,
    contract_depth,
    depth_to_points,
    disparity_edges,
    far_threshold,
    frustum_overlap,
    frustum_samples,
    splat_points,
    splat_points_reference,
    view_angle,
)

W, H = 32, 24
K = torch.tensor([[100.0, 0.0, 16.0], [0.0, 100.0, 12.0], [0.0, 0.0, 1.0]])


def camera(tz: float = 0.0) -> CameraParameters:
    E = torch.eye(4)
    E[2, 3] = tz
    return CameraParameters(K, E, W, H)


# ------------------------------------------------------------------------------ depth_to_points
def test_constant_depth_lifts_to_hand_computed_points():
    depth = torch.full((1, 1, H, W), 2.0)
    out = depth_to_points(depth, camera(tz=1.0))  # world z = camera z - 1
    assert isinstance(out, DepthPoints)
    assert out.points.shape == (H * W, 3) and out.points.dtype == torch.float32
    assert out.colors is None
    assert out.mask.shape == (1, 1, H, W) and out.mask.all()
    # Pixel (0, 0): centre (0.5, 0.5) -> x = (0.5 - 16) / 100 * 2, y = (0.5 - 12) / 100 * 2.
    assert torch.allclose(out.points[0], torch.tensor([-0.31, -0.23, 1.0]), atol=1e-6)
    # Pixel (row 7, col 20) is number 7 * W + 20 in row-major order.
    assert out.pixels[7 * W + 20].tolist() == [0, 7, 20]
    assert torch.allclose(out.points[7 * W + 20], torch.tensor([0.09, -0.09, 1.0]), atol=1e-6)


def test_unknown_depth_is_skipped_and_colors_follow_pixels():
    depth = torch.full((2, 1, H, W), 3.0)
    depth[0, 0, 2, 5] = 0.0
    depth[1, 0, 10:12, 3] = -1.0
    image = torch.rand(2, 3, H, W)
    out = depth_to_points(depth, camera(), image=image)
    assert out.points.shape[0] == 2 * H * W - 3
    assert not out.mask[0, 0, 2, 5] and not out.mask[1, 0, 10, 3] and out.mask[1, 0, 12, 3]
    assert (out.depth[1, 0, 10:12, 3] == 0).all()
    b, i, j = out.pixels.unbind(1)
    assert torch.equal(out.colors, image[b, :, i, j])
    # Each point projects back into its own pixel at its depth.
    uv, z = camera().project(out.points)
    assert torch.equal(uv[0].floor().long(), torch.stack([j, i], dim=1))
    assert torch.allclose(z[0], torch.tensor(3.0))


@pytest.mark.parametrize("splat", [splat_points, splat_points_reference], ids=["fast", "reference"])
def test_unproject_then_splat_reproduces_depth_and_colors(splat):
    g = torch.Generator().manual_seed(1)
    cams = CameraParameters.look_at(
        torch.tensor([[0.0, 0.0, 0.0], [0.5, -0.2, 0.3]]),
        torch.tensor([[0.0, 0.0, 4.0], [-0.3, 0.1, 4.0]]),
        fov_y=math.radians(50),
        width=W,
        height=H,
    )
    depth = 1.0 + 4.0 * torch.rand(2, 1, H, W, generator=g)
    image = torch.rand(2, 3, H, W, generator=g)
    lifted = depth_to_points(depth, cams, image=image)
    for b in range(2):
        sel = lifted.pixels[:, 0] == b
        out = splat(lifted.points[sel], lifted.colors[sel], cams[b])
        assert not out.hole_mask.any()
        assert torch.allclose(out.depth[0], depth[b], rtol=1e-5, atol=0)
        assert torch.equal(out.image[0], image[b])
        assert torch.equal(out.point_ids[0].reshape(-1), torch.arange(H * W))


def test_floater_filter_removes_the_step_edge_and_keeps_flat_areas():
    depth = torch.full((1, 1, H, W), 1.0)
    depth[..., 16:] = 3.0  # a step between columns 15 and 16
    expected = torch.ones(H, W, dtype=torch.bool)
    expected[:, 15:17] = False  # 3x3 windows straddling the step
    out = depth_to_points(depth, camera(), filter_floaters=True)
    assert torch.equal(out.mask[0, 0], expected)
    assert out.points.shape[0] == H * W - 2 * H
    wide = depth_to_points(depth, camera(), filter_floaters=True, edge_kernel_size=5)
    expected[:, 14:18] = False
    assert torch.equal(wide.mask[0, 0], expected)
    assert depth_to_points(depth, camera()).mask.all()  # off by default


def test_floater_filter_keeps_gentle_slopes_and_hole_borders():
    cols = torch.arange(W, dtype=torch.float32)
    depth = (2.0 + 0.005 * cols).expand(1, 1, H, W).clone()  # 0.25 % per pixel
    depth[..., 5:9, 5:9] = 0.0  # a hole: its neighbours are not edges
    edges = disparity_edges(depth, edge_threshold=0.03)
    assert not edges.any()
    depth[..., 20, 20] = 2.2  # a ~5 % bump is an edge, with its 8 neighbours
    edges = disparity_edges(depth, edge_threshold=0.03)
    assert edges.sum() == 9 and edges[0, 0, 19:22, 19:22].all()


def test_disparity_edges_hand_computed_ratio():
    # Disparities 1 and 0.5: range 0.5 relative to 1 (near side) and to 0.5 (far side).
    depth = torch.tensor([[[[1.0, 1.0, 2.0, 2.0]]]])
    assert disparity_edges(depth, edge_threshold=0.4).tolist() == [[[[False, True, True, False]]]]
    assert disparity_edges(depth, edge_threshold=0.6).tolist() == [[[[False, False, True, False]]]]
    assert not disparity_edges(depth, edge_threshold=1.0).any()


def test_contraction_is_identity_below_far_monotonic_and_bounded():
    d = torch.linspace(0.01, 1000.0, 20001, dtype=torch.float64)
    c = contract_depth(d, 10.0)
    below = d <= 10.0
    assert torch.equal(c[below], d[below])
    assert (c[1:] > c[:-1]).all()  # strictly increasing
    assert (c < 20.0).all() and c[-1] > 19.0
    assert contract_depth(torch.tensor([20.0, 40.0]), 10.0).tolist() == [15.0, 17.5]
    # Continuous with slope 1 at far.
    eps = 1e-4
    assert contract_depth(torch.tensor([10.0 + eps], dtype=torch.float64), 10.0).item() == pytest.approx(
        10.0 + eps, abs=1e-8
    )
    assert contract_depth(torch.tensor([0.0, -1.0]), 10.0).tolist() == [0.0, -1.0]


def test_far_threshold_is_a_percentile_of_valid_depth():
    depth = torch.arange(1.0, 101.0).view(1, 1, 10, 10)
    assert far_threshold(depth, 95.0).item() == 95.0
    depth = torch.cat([depth, torch.zeros_like(depth)], dim=-1)  # zeros are ignored
    assert far_threshold(depth, 50.0).item() == 50.0
    assert far_threshold(torch.zeros(1, 1, 4, 4), 50.0).item() == math.inf


def test_depth_to_points_contracts_far_pixels_along_their_rays():
    depth = torch.full((1, 1, H, W), 2.0)
    depth[..., :4, :] = 40.0  # far background rows
    out = depth_to_points(depth, camera(), contract_far=True, far=10.0)
    uv, z = camera().project(out.points)
    b, i, j = out.pixels.unbind(1)
    assert torch.equal(uv[0].floor().long(), torch.stack([j, i], dim=1))  # same pixel rays
    assert torch.allclose(z[0][i < 4], torch.tensor(17.5))
    assert torch.allclose(z[0][i >= 4], torch.tensor(2.0))
    # With the percentile rule the far threshold comes from the data: 80 % of pixels are at 2.
    out = depth_to_points(depth, camera(), contract_far=True, far_percentile=50.0)
    assert torch.allclose(out.depth[0, 0, 0, 0], torch.tensor(2.0 * (2.0 - 2.0 / 40.0)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(depth=torch.ones(1, H, W)), "depth"),
        (dict(depth=torch.ones(1, 1, H, W + 1)), "depth size"),
        (dict(depth=torch.full((1, 1, H, W), float("nan"))), "depth"),
        (dict(depth=torch.ones(3, 1, H, W), cameras=CameraParameters.cat([camera(), camera()])), "depth batch"),
        (dict(image=torch.ones(1, 3, H, W - 1)), "image"),
        (dict(cameras=None), "cameras"),
        (dict(filter_floaters=True, edge_threshold=0.0), "edge_threshold"),
        (dict(filter_floaters=True, edge_kernel_size=2), "edge_kernel_size"),
        (dict(contract_far=True, far_percentile=0.0), "far_percentile"),
        (dict(contract_far=True, far=-1.0), "far"),
    ],
)
def test_depth_to_points_validation_names_the_argument(kwargs, name):
    args = dict(depth=torch.ones(1, 1, H, W), cameras=camera())
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        depth_to_points(**args)


# ------------------------------------------------------------------------------ frustum overlap
def looking(direction, eye=(0.0, 0.0, 0.0), focal: float = 100.0) -> CameraParameters:
    eye_t = torch.tensor(eye)
    Kf = torch.tensor([[focal, 0.0, 16.0], [0.0, focal, 12.0], [0.0, 0.0, 1.0]])
    return CameraParameters.look_at(eye_t, eye_t + torch.tensor(direction), width=W, height=H, intrinsics=Kf)


def test_identical_cameras_overlap_fully_and_opposite_ones_not_at_all():
    fwd, back = looking([0.0, 0.0, 1.0]), looking([0.0, 0.0, -1.0])
    side = looking([1.0, 0.0, 0.0])
    cams = CameraParameters.cat([fwd, back, side])
    ov = frustum_overlap(cams, cams, near=0.1, far=10.0)
    assert ov.shape == (3, 3) and ov.dtype == torch.float32
    assert torch.allclose(ov.diagonal(), torch.ones(3))
    assert ov[0, 1] == 0 and ov[1, 0] == 0
    # 90 degrees apart with a ~9 degree half-FOV: nothing shared either.
    assert ov[0, 2] == 0 and ov[2, 0] == 0


def test_narrower_camera_sees_a_quarter_of_the_wider_one():
    # Same pose, double focal length: b's frustum is the central half (per axis) of a's, at every
    # depth, so a quarter of a's volume, and all of b's volume is inside a.
    a, b = looking([0.0, 0.0, 1.0]), looking([0.0, 0.0, 1.0], focal=200.0)
    assert frustum_overlap(a, b).item() == pytest.approx(0.25, abs=1e-6)
    assert frustum_overlap(b, a).item() == pytest.approx(1.0, abs=1e-6)


def test_overlap_shrinks_as_a_camera_slides_sideways():
    base = looking([0.0, 0.0, 1.0], focal=20.0)  # wide: ~39 degree half-FOV
    shifted = CameraParameters.cat(
        [looking([0.0, 0.0, 1.0], eye=(dx, 0.0, 0.0), focal=20.0) for dx in (0.0, 0.5, 1.0, 2.0, 4.0)]
    )
    ov = frustum_overlap(base, shifted, near=0.5, far=8.0)[0]
    assert ov[0] == pytest.approx(1.0)
    assert (ov[1:] < ov[:-1]).all()
    assert ((ov >= 0) & (ov <= 1)).all()


def test_frustum_samples_are_inside_the_view_volume():
    cam = looking([0.3, 0.1, 1.0], eye=(1.0, 2.0, 3.0))
    pts, weights = frustum_samples(cam, near=0.5, far=4.0, num_samples=4)
    assert pts.shape == (1, 64, 3) and weights.shape == (64,)
    assert weights.sum().item() == pytest.approx(1.0)
    uv, z = cam.project(pts)
    assert ((z > 0.5) & (z < 4.0)).all()
    assert ((uv >= 0) & (uv < torch.tensor([W, H]))).all()


def test_view_angle_between_optical_axes():
    cams = CameraParameters.cat([looking([0.0, 0.0, 1.0]), looking([1.0, 0.0, 0.0]), looking([0.0, 0.0, -1.0])])
    ang = view_angle(cams, cams)
    expected = torch.tensor([[0.0, math.pi / 2, math.pi], [math.pi / 2, 0.0, math.pi / 2], [math.pi, math.pi / 2, 0.0]])
    assert ang.shape == (3, 3)
    assert torch.allclose(ang, expected, atol=1e-5)
    tilted = looking([0.0, math.sin(0.3), math.cos(0.3)])
    assert view_angle(cams[0], tilted).item() == pytest.approx(0.3, abs=1e-5)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(near=1.0, far=1.0), "near"),
        (dict(near=-1.0), "near"),
        (dict(far=float("inf")), "far"),
        (dict(num_samples=0), "num_samples"),
        (dict(cameras_b="cam"), "cameras_b"),
    ],
)
def test_frustum_overlap_validation_names_the_argument(kwargs, name):
    args = dict(cameras_a=camera(), cameras_b=camera())
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        frustum_overlap(**args)
