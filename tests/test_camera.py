"""CameraParameters: shapes, hand-computed projections, invariants and validation."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from worldstereo.camera import CameraParameters, opencv_to_opengl, opengl_to_opencv


def _random_rotation(g: torch.Generator) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    if torch.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def _random_cameras(b: int, width: int = 40, height: int = 30, seed: int = 0) -> CameraParameters:
    g = torch.Generator().manual_seed(seed)
    E = torch.eye(4, dtype=torch.float64).repeat(b, 1, 1)
    K = torch.zeros(b, 3, 3, dtype=torch.float64)
    for i in range(b):
        E[i, :3, :3] = _random_rotation(g)
        E[i, :3, 3] = torch.randn(3, generator=g, dtype=torch.float64)
        K[i] = torch.tensor([[30.0 + i, 0.3, 19.0], [0.0, 28.0 + i, 16.0], [0.0, 0.0, 1.0]], dtype=torch.float64)
    return CameraParameters(K, E, width, height)


def test_project_hand_computed():
    K = torch.tensor([[100.0, 0.0, 50.0], [0.0, 80.0, 40.0], [0.0, 0.0, 1.0]])
    E = torch.eye(4)
    E[:3, 3] = torch.tensor([1.0, 0.0, 0.0])  # world origin sits 1 unit right of the camera
    cam = CameraParameters(K, E, 100, 80)
    uv, depth = cam.project(torch.tensor([[0.0, 0.0, 2.0], [-1.0, 0.5, 4.0]]))
    assert uv.shape == (1, 2, 2) and depth.shape == (1, 2)
    # x_cam = 1, z = 2 -> u = 100 * 0.5 + 50 = 100; v = 40
    torch.testing.assert_close(uv[0, 0], torch.tensor([100.0, 40.0]))
    # x_cam = 0, y = 0.5, z = 4 -> u = 50, v = 80 * 0.125 + 40 = 50
    torch.testing.assert_close(uv[0, 1], torch.tensor([50.0, 50.0]))
    torch.testing.assert_close(depth[0], torch.tensor([2.0, 4.0]))
    assert torch.equal(cam.camera_centers, torch.tensor([[-1.0, 0.0, 0.0]]))


def test_pixel_centre_convention():
    cam = CameraParameters.from_fov(math.radians(90.0), 4, 4)
    # principal point at (2, 2): the centre of pixel (row 1, col 1) is (1.5, 1.5)
    pts = cam.unproject(torch.ones(1, 1, 4, 4))
    torch.testing.assert_close(pts[0, 1, 1], torch.tensor([-0.25, -0.25, 1.0]))
    torch.testing.assert_close(pts[0, 0, 0], torch.tensor([-0.75, -0.75, 1.0]))


@pytest.mark.parametrize("b", [1, 3])
def test_unproject_projects_back_to_pixel_centres(b):
    cam = _random_cameras(b)
    depth = torch.rand(b, 1, cam.height, cam.width, dtype=torch.float64) * 5 + 0.5
    pts = cam.unproject(depth)
    assert pts.shape == (b, cam.height, cam.width, 3)
    uv, z = cam.project(pts.reshape(b, -1, 3))
    grid = cam.pixel_grid().reshape(1, -1, 2).expand(b, -1, -1)
    torch.testing.assert_close(uv, grid, atol=1e-8, rtol=0)
    torch.testing.assert_close(z, depth.reshape(b, -1), atol=1e-10, rtol=0)


def test_shared_points_broadcast_over_batch():
    cam = _random_cameras(4)
    pts = torch.randn(7, 3, dtype=torch.float64)
    uv, depth = cam.project(pts)
    assert uv.shape == (4, 7, 2) and depth.shape == (4, 7)
    for i in range(4):
        uv_i, d_i = cam[i].project(pts)
        torch.testing.assert_close(uv_i[0], uv[i])
        torch.testing.assert_close(d_i[0], depth[i])


def test_c2w_is_inverse_and_centres():
    cam = _random_cameras(5)
    eye = torch.eye(4, dtype=torch.float64).expand(5, 4, 4)
    torch.testing.assert_close(cam.c2w @ cam.w2c, eye)
    torch.testing.assert_close(cam.c2w[:, :3, 3], cam.camera_centers)
    # the centre maps to the camera origin
    cam_pts = cam.world_to_camera(cam.camera_centers.unsqueeze(1))
    torch.testing.assert_close(cam_pts, torch.zeros(5, 1, 3, dtype=torch.float64))


def test_rays_pass_through_unprojected_points():
    cam = _random_cameras(2)
    rays = cam.rays()
    assert rays.origins.shape == rays.directions.shape == (2, cam.height, cam.width, 3)
    torch.testing.assert_close(rays.directions.norm(dim=-1), torch.ones(2, cam.height, cam.width, dtype=torch.float64))
    pts = cam.unproject(torch.full((2, 1, cam.height, cam.width), 3.0, dtype=torch.float64))
    dirs = pts - rays.origins
    dirs = dirs / dirs.norm(dim=-1, keepdim=True)
    torch.testing.assert_close(dirs, rays.directions)


def test_plucker_moment_is_perpendicular_and_origin_invariant():
    cam = _random_cameras(2)
    p = cam.plucker()
    assert p.shape == (2, 6, cam.height, cam.width)
    moment, direction = p[:, :3], p[:, 3:]
    torch.testing.assert_close((moment * direction).sum(1), torch.zeros(2, cam.height, cam.width, dtype=torch.float64))
    # the moment is the same for any point on the ray: o x d == (o + 2d) x d
    r = cam.rays()
    shifted = torch.cross(r.origins + 2 * r.directions, r.directions, dim=-1).permute(0, 3, 1, 2)
    torch.testing.assert_close(shifted, moment)


def test_resized_keeps_projection_relative():
    cam = _random_cameras(2, width=40, height=30)
    small = cam.resized(20, 15)
    pts = torch.randn(10, 3, dtype=torch.float64)
    uv, d = cam.project(pts)
    uv_s, d_s = small.project(pts)
    torch.testing.assert_close(uv_s, uv * 0.5)
    torch.testing.assert_close(d_s, d)
    assert (small.width, small.height) == (20, 15)


def test_from_fov_and_fov_roundtrip():
    cam = CameraParameters.from_fov([math.radians(50), math.radians(70)], 64, 48)
    torch.testing.assert_close(cam.fov_y, torch.tensor([math.radians(50), math.radians(70)]))
    assert len(cam) == 2
    torch.testing.assert_close(cam.K[:, 0, 2], torch.tensor([32.0, 32.0]))
    deg = CameraParameters.from_fov(60.0, 64, 48, degrees=True)
    torch.testing.assert_close(deg.fov_y, torch.tensor([math.radians(60)]))


def test_look_at_centres_target_and_keeps_up():
    eye = torch.tensor([1.0, -0.5, -3.0])
    target = torch.tensor([0.2, 0.1, 2.0])
    cam = CameraParameters.look_at(eye, target, width=64, height=48)
    uv, d = cam.project(target.unsqueeze(0))
    torch.testing.assert_close(uv[0, 0], torch.tensor([32.0, 24.0]), atol=1e-4, rtol=0)
    assert d[0, 0] > 0
    torch.testing.assert_close(cam.camera_centers[0], eye, atol=1e-5, rtol=0)
    # a point above the target (world up = -y) appears higher in the image (smaller v)
    uv_up, _ = cam.project((target + torch.tensor([0.0, -0.5, 0.0])).unsqueeze(0))
    assert uv_up[0, 0, 1] < 24.0
    assert cam.dtype == torch.float32


def test_indexing_len_to_and_cat():
    cam = _random_cameras(4)
    assert len(cam) == 4
    one = cam[2]
    assert len(one) == 1 and torch.equal(one.w2c[0], cam.w2c[2])
    assert len(cam[1:3]) == 2
    assert len(cam[torch.tensor([0, 3])]) == 2
    assert torch.equal(cam[-1].w2c, cam[3].w2c)
    with pytest.raises(IndexError):
        cam[4]
    f32 = cam.to(dtype=torch.float32)
    assert f32.dtype == torch.float32 and f32.w2c.shape == (4, 4, 4)
    both = CameraParameters.cat([cam[0], cam[1:]])
    assert torch.equal(both.w2c, cam.w2c)
    assert [len(c) for c in cam] == [1, 1, 1, 1]


def test_float64_numpy_input_is_kept_exact():
    data = json.loads(json.dumps({"K": [[500.123456789, 0, 256.5], [0, 500.987654321, 192.25], [0, 0, 1]]}))
    cam = CameraParameters(np.asarray(data["K"]), np.eye(4), 512, 384)
    assert cam.dtype == torch.float64
    assert cam.K[0, 0, 0].item() == 500.123456789


def test_opencv_opengl_conversion_roundtrip():
    cam = _random_cameras(3)
    gl = opencv_to_opengl(cam.c2w)
    # OpenGL looks down -z: the OpenCV forward axis is minus the OpenGL z column
    torch.testing.assert_close(gl[:, :3, 2], -cam.c2w[:, :3, 2])
    torch.testing.assert_close(gl[:, :3, 1], -cam.c2w[:, :3, 1])
    torch.testing.assert_close(opengl_to_opencv(gl), cam.c2w)


def test_from_c2w_matches_extrinsics():
    cam = _random_cameras(2)
    again = CameraParameters.from_c2w(cam.K, cam.c2w, cam.width, cam.height)
    torch.testing.assert_close(again.w2c, cam.w2c)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"intrinsics": torch.eye(4)}, "intrinsics"),
        ({"extrinsics": torch.eye(3)}, "extrinsics"),
        ({"intrinsics": torch.full((3, 3), float("nan"))}, "intrinsics"),
        ({"extrinsics": torch.tensor([[1.0, 0, 0, float("inf")], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]])}, "extrinsics"),
        ({"width": 0}, "width"),
        ({"height": -5}, "height"),
        ({"width": 3.5}, "width"),
        ({"extrinsics": torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0]))}, "extrinsics"),
        ({"extrinsics": torch.diag(torch.tensor([-1.0, 1.0, 1.0, 1.0]))}, "extrinsics"),
        ({"intrinsics": torch.tensor([[-10.0, 0, 5], [0, 10, 5], [0, 0, 1]])}, "intrinsics"),
        ({"intrinsics": torch.eye(3).repeat(2, 1, 1), "extrinsics": torch.eye(4).repeat(3, 1, 1)}, "batch"),
    ],
)
def test_validation_names_the_argument(kwargs, name):
    args = {"intrinsics": torch.eye(3), "extrinsics": torch.eye(4), "width": 8, "height": 6}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        CameraParameters(**args)


def test_unproject_and_project_validation():
    cam = CameraParameters.from_fov(1.0, 8, 6)
    with pytest.raises(ValueError, match="depth"):
        cam.unproject(torch.ones(1, 1, 5, 8))
    with pytest.raises(ValueError, match="depth"):
        cam.unproject(torch.full((1, 1, 6, 8), float("nan")))
    with pytest.raises(ValueError, match="points"):
        cam.project(torch.ones(4, 2))


def test_mixed_precision_points_project():
    cam = CameraParameters.from_fov(1.0, 8, 6)  # float32
    pts = torch.tensor([[0.1, -0.2, 2.0]], dtype=torch.float64)
    uv, depth = cam.project(pts)
    uv32, depth32 = cam.project(pts.float())
    torch.testing.assert_close(uv.float(), uv32)
    torch.testing.assert_close(depth.float(), depth32)
