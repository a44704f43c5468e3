"""Procedural ground-truth scenes: analytic primitives, determinism, geometric consistency, ground-truth surface."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from worldstereo.camera import CameraParameters
from worldstereo.scenes import SceneRender, get_scene, list_scenes
from worldstereo.scenes.primitives import Box, Cylinder, Ellipsoid, HeightField, Quad, WaveTerrain, yaw_rotation
from worldstereo.scenes.textures import Checker

SCENES = ["room", "terrain", "tabletop"]
W, H = 96, 72


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():
    """Many small ops: on a shared 2-core machine two OpenMP threads thrash (10x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scenes():
    return {name: get_scene(name, seed=0) for name in SCENES}


def _unit(v):
    v = torch.tensor(v, dtype=torch.float32)
    return (v / v.norm()).reshape(1, 3)


def _moved_camera(cam: CameraParameters, yaw_deg: float, shift) -> CameraParameters:
    """``cam`` rotated by ``yaw_deg`` about its y axis and its centre moved by ``shift`` (world)."""
    a = math.radians(yaw_deg)
    R = torch.tensor([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    c2w = torch.eye(4)
    c2w[:3, :3] = R
    c2w[:3, 3] = torch.tensor(shift, dtype=torch.float32)
    return CameraParameters.from_c2w(cam.intrinsics, c2w, cam.width, cam.height)


# ---------------------------------------------------------------------------------------- primitives
TEX = Checker(0)


def test_sphere_hits_from_outside_and_inside():
    s = Ellipsoid((0.0, 0.0, 5.0), 1.0, TEX)
    o = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 5.0], [0.0, 3.0, 0.0]])
    d = torch.cat([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([0, 0, 1])])
    t = s.intersect(o, d)
    assert t[0] == pytest.approx(4.0, abs=1e-5)  # front of the sphere
    assert t[1] == pytest.approx(1.0, abs=1e-5)  # from the centre: exit point
    assert torch.isinf(t[2])  # passes 3 units above
    surf = s.surface(torch.tensor([[0.0, 0.0, 4.0]]))
    assert torch.allclose(surf.normals, torch.tensor([[0.0, 0.0, -1.0]]), atol=1e-6)


def test_box_hits_and_normals():
    b = Box((0.0, 0.0, 3.0), (1.0, 0.5, 0.25), TEX)
    o = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0]])
    d = torch.cat([_unit([0, 0, 1]), _unit([1, 0, 0]), _unit([0, -1, 0])])
    t = b.intersect(o, d)
    assert t[0] == pytest.approx(2.75, abs=1e-5)
    assert t[1] == pytest.approx(1.0, abs=1e-5)  # inside: exit through +x face
    assert torch.isinf(t[2])
    n = b.surface(torch.tensor([[0.2, 0.1, 2.75], [1.0, 0.0, 3.0]])).normals
    assert torch.allclose(n, torch.tensor([[0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]))
    # a box yawed by 90 degrees swaps its x and z extents
    r = Box((0.0, 0.0, 3.0), (1.0, 0.5, 0.25), TEX, yaw_rotation(math.pi / 2))
    assert r.intersect(o[:1], d[:1])[0] == pytest.approx(2.0, abs=1e-5)


def test_quad_cylinder_heightfield():
    q = Quad((0.0, 0.0, 2.0), (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), 0.5, 0.5, TEX)
    o = torch.zeros(2, 3)
    d = torch.cat([_unit([0.1, 0, 1]), _unit([0.4, 0, 1])])  # x at z=2: 0.2 (inside) and 0.8 (outside)
    t = q.intersect(o, d)
    assert t[0] == pytest.approx(2.0 * math.sqrt(1.01), abs=1e-5) and torch.isinf(t[1])
    assert torch.allclose(q.normal, torch.tensor([0.0, 0.0, 1.0]))
    c = Cylinder((0.0, 0.0, 4.0), 0.5, 1.0, TEX)
    o = torch.tensor([[0.0, 0.0, 0.0], [0.0, -3.0, 4.2]])
    d = torch.cat([_unit([0, 0, 1]), _unit([0, 1, 0])])
    t = c.intersect(o, d)
    assert t[0] == pytest.approx(3.5, abs=1e-5)  # side
    assert t[1] == pytest.approx(2.0, abs=1e-5)  # top cap (y down: top at y = -1)
    n = c.surface(torch.tensor([[0.0, 0.0, 3.5], [0.0, -1.0, 4.2]])).normals
    assert torch.allclose(n, torch.tensor([[0.0, 0.0, -1.0], [0.0, -1.0, 0.0]]), atol=1e-6)
    flat = HeightField(WaveTerrain(2.0, 0.0, 0.0, 0.0, ()), (-10, 10), (-10, 10), TEX)
    d = _unit([0.0, 1.0, 2.0])  # ground 2 below: hits at t = 2 * sqrt(5)
    assert flat.intersect(torch.zeros(1, 3), d)[0] == pytest.approx(2.0 * math.sqrt(5.0), abs=1e-4)
    assert torch.isinf(flat.intersect(torch.zeros(1, 3), _unit([0.0, -1.0, 2.0]))[0])


@pytest.mark.parametrize(
    "prim",
    [
        Box((0.3, -0.2, 2.0), (0.4, 0.2, 0.3), TEX, yaw_rotation(0.7)),
        Ellipsoid((0.0, 0.1, 3.0), (0.5, 0.3, 0.8), TEX),
        Cylinder((0.2, 0.0, 2.5), 0.3, 0.6, TEX),
        Quad((0.0, 0.0, 3.0), (0.0, 0.0, 1.0), (0.0, 1.0, 0.0), 0.7, 0.4, TEX),
    ],
    ids=["box", "ellipsoid", "cylinder", "quad"],
)
def test_primitive_samples_are_hit_by_rays_towards_them(prim):
    """A ray from a far point towards a sampled point meets the surface at or before that point."""
    pts = prim.sample(400, torch.Generator().manual_seed(1))
    origin = torch.tensor([[4.0, -3.0, -2.0]])
    diff = pts - origin
    t = prim.intersect(origin.expand_as(pts), diff / diff.norm(dim=-1, keepdim=True))
    dist = diff.norm(dim=-1)
    # never passes through a sampled point (bar float rounding on rays grazing the silhouette)
    assert float((t > dist + 1e-4).float().mean()) < 0.01
    assert float((t - dist).abs().lt(1e-4).float().mean()) > 0.3  # visible ones are hit exactly


def test_ellipsoid_sampling_is_area_uniform():
    # a sphere's area-uniform samples have z uniform in [-r, r] (Archimedes)
    pts = Ellipsoid((0.0, 0.0, 0.0), 1.0, TEX).sample(20000, torch.Generator().manual_seed(0))
    hist = torch.histc(pts[:, 2], bins=4, min=-1, max=1) / 20000
    assert torch.allclose(hist, torch.full((4,), 0.25), atol=0.02)
    assert torch.allclose(pts.norm(dim=-1), torch.ones(20000), atol=1e-5)


# ---------------------------------------------------------------------------------------- registry
def test_registry_lists_and_rejects():
    assert list_scenes() == SCENES
    with pytest.raises(ValueError, match="room"):
        get_scene("castle")
    with pytest.raises(ValueError, match="seed"):
        get_scene("room", seed=-1)


# ---------------------------------------------------------------------------------------- scenes
@pytest.mark.parametrize("name", SCENES)
def test_start_camera_is_identity_with_60_degree_fov(scenes, name):
    cam = scenes[name].start_camera(512, 384)
    assert len(cam) == 1 and (cam.width, cam.height) == (512, 384)
    assert torch.equal(cam.extrinsics[0], torch.eye(4))
    f = 0.5 * 384 / math.tan(math.radians(30.0))
    assert torch.allclose(cam.intrinsics[0], torch.tensor([[f, 0, 256.0], [0, f, 192.0], [0, 0, 1]]))
    view = scenes[name].start_view(W, H)
    assert view.image.shape == (1, 3, H, W) and view.depth.shape == (1, 1, H, W)
    assert 2.0 <= scenes[name].scene_depth <= 6.0


@pytest.mark.parametrize("name", SCENES)
def test_seed_determinism(scenes, name):
    cam = scenes[name].start_camera(W, H)
    a = scenes[name].render(cam)
    b = get_scene(name, seed=0).render(cam)
    c = get_scene(name, seed=1).render(cam)
    assert torch.equal(a.image, b.image) and torch.equal(a.depth, b.depth)
    assert float((a.image - c.image).abs().mean()) > 0.02  # other textures ...
    assert torch.equal(a.depth, c.depth)  # ... same geometry


def test_render_batch_shapes_and_fields(scenes):
    scene = scenes["tabletop"]
    cam0 = scene.start_camera(W, H)
    cams = CameraParameters.cat([cam0, _moved_camera(cam0, 15.0, (0.3, 0.0, 0.1)), _moved_camera(cam0, -20, (-0.4, 0, 0))])
    out = scene.render(cams)
    assert isinstance(out, SceneRender)
    assert out.image.shape == (3, 3, H, W) and out.image.dtype == torch.float32
    assert out.depth.shape == (3, 1, H, W) and out.depth.dtype == torch.float32
    assert out.hit_mask.dtype == torch.bool and out.primitive_ids.dtype == torch.int64
    assert out.image.min() >= 0 and out.image.max() <= 1
    assert torch.equal(out.hit_mask, out.depth > 0) and torch.equal(out.hit_mask, out.primitive_ids >= 0)
    n = out.normals.norm(dim=1, keepdim=True)
    assert torch.allclose(n[out.hit_mask], torch.ones(()), atol=1e-4)
    # batching and chunking change nothing: camera 1 alone, in tiny chunks
    single = scene.render(cams[1], chunk_rays=1000)
    assert torch.allclose(single.image[0], out.image[1], atol=1e-6)
    assert torch.allclose(single.depth[0], out.depth[1], atol=1e-5)
    with pytest.raises(ValueError, match="cameras"):
        scene.render(torch.eye(4))


def _orbit(cam: CameraParameters, yaw_deg: float, radius: float) -> CameraParameters:
    """``cam`` orbited by ``yaw_deg`` about the vertical through the point ``radius`` ahead of it."""
    a = math.radians(yaw_deg)
    return _moved_camera(cam, yaw_deg, (-radius * math.sin(a), 0.0, radius * (1.0 - math.cos(a))))


def _orbit_cameras(scene, w=W, h=H):
    """Camera 0, orbits of +-30 degrees about the scene centre, moves of 0.3 x scene depth."""
    cam0 = scene.start_camera(w, h)
    d = scene.scene_depth
    return CameraParameters.cat([
        cam0,
        _orbit(cam0, 30.0, d),
        _orbit(cam0, -30.0, d),
        _moved_camera(cam0, 0.0, (0.3 * d, 0.0, 0.0)),
        _moved_camera(cam0, 0.0, (-0.3 * d, 0.0, 0.0)),
        _moved_camera(cam0, 0.0, (0.0, 0.0, 0.3 * d)),
    ])


@pytest.mark.parametrize("name,min_hit", [("room", 1.0), ("terrain", 0.9), ("tabletop", 1.0)])
def test_views_along_typical_paths_hit_surfaces(scenes, name, min_hit):
    out = scenes[name].render(_orbit_cameras(scenes[name]))
    hit = out.hit_mask.float().mean(dim=(1, 2, 3))
    assert bool((hit >= min_hit).all()), hit.tolist()
    if name == "room":
        assert bool((out.depth > 0).all())


def test_room_floor_is_1_5_below_the_start_camera(scenes):
    scene = scenes["room"]
    cam = scene.start_camera(W, H)
    out = scene.render(cam)
    pts = cam.unproject(out.depth)[0]  # camera 0 is the world origin
    up = scene.up
    height = pts @ up
    normal_up = torch.einsum("chw,c->hw", out.normals[0], up)
    floor = (normal_up > 0.999) & (height < -1.2)
    assert int(floor.sum()) > 0.1 * W * H
    assert bool(((height[floor] + 1.5).abs() < 0.0051).all())  # floor at 1.5, rug 4 mm above it


def test_tabletop_start_camera_looks_down_30_degrees(scenes):
    up = scenes["tabletop"].up
    pitch = math.degrees(math.asin(-float(up[2])))  # optical axis (0, 0, 1) below the horizon
    assert pitch == pytest.approx(math.degrees(math.atan2(1.3, 2.25)), abs=0.01)
    assert float(up.norm()) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", SCENES)
def test_same_point_same_colour_and_depth_from_another_camera(scenes, name):
    """Points seen by camera 0 are looked at through the pixel centre of 1x1 cameras placed elsewhere:
    where nothing occludes them, the ray lands exactly on the point with exactly its colour."""
    scene = scenes[name]
    cam = scene.start_camera(W, H)
    ref = scene.render(cam)
    pts = cam.unproject(ref.depth)[0].reshape(-1, 3)
    cols = ref.image[0].permute(1, 2, 0).reshape(-1, 3)
    keep = torch.nonzero(ref.depth.reshape(-1) > 0).squeeze(1)[::17]
    pts, cols = pts[keep], cols[keep]
    eye = torch.tensor([0.35, -0.1, 0.2]) * scene.scene_depth
    probes = CameraParameters.look_at(eye.expand_as(pts), pts, width=1, height=1, fov_y=0.01)
    out = scene.render(probes)
    dist = (pts - eye).norm(dim=-1)
    depth = out.depth.reshape(-1)
    visible = (depth - dist).abs() < 1e-3 * dist
    assert float(visible.float().mean()) > 0.5
    assert bool((depth[out.hit_mask.reshape(-1)] < dist[out.hit_mask.reshape(-1)] * (1 + 1e-3)).all())
    err = (out.image.reshape(-1, 3)[visible] - cols[visible]).abs().amax(-1)
    assert float(err.median()) < 1e-4
    assert float((err < 1e-2).float().mean()) > 0.98  # rare texel-boundary flips from float rounding


@pytest.mark.parametrize("name", SCENES)
def test_dense_reprojection_matches_second_render(scenes, name):
    scene = scenes[name]
    cam0 = scene.start_camera(128, 96)
    cams = CameraParameters.cat([cam0, _orbit(cam0, 15.0, scene.scene_depth)])
    out = scene.render(cams)
    pts = cams[0].unproject(out.depth[:1])[0].reshape(-1, 3)[out.hit_mask[0].reshape(-1)]
    uv, z = cams[1].project(pts)
    uv, z = uv[0], z[0]
    inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < 128) & (uv[:, 1] >= 0) & (uv[:, 1] < 96)
    col, row = uv[inside, 0].long(), uv[inside, 1].long()
    d2 = out.depth[1, 0, row, col]
    agree = (d2 - z[inside]).abs() < 0.03 * z[inside]
    assert float(inside.float().mean()) > 0.5
    assert float(agree.float().mean()) > 0.75
    assert float((d2 > z[inside] * 1.03).float().mean()) < 0.02  # nothing seen *behind* a known surface


@pytest.mark.parametrize("name", SCENES)
def test_surface_sample_lies_on_rendered_surfaces(scenes, name):
    scene = scenes[name]
    sample = scene.sample_surface(60000, seed=3)
    assert sample.points.shape == (60000, 3) and sample.colors.shape == (60000, 3)
    assert sample.points.dtype == torch.float32
    assert torch.allclose(sample.normals.norm(dim=-1), torch.ones(60000), atol=1e-4)
    assert torch.equal(sample.points, scene.sample_surface(60000, seed=3).points)
    cam = scene.start_camera(128, 96)
    out = scene.render(cam)
    # 1) no sampled point lies in front of the rendered surface (it would have been hit)
    uv, z = cam.project(sample.points)
    uv, z = uv[0], z[0]
    inside = (z > 0.05) & (uv[:, 0] >= 2) & (uv[:, 0] < 126) & (uv[:, 1] >= 2) & (uv[:, 1] < 94)
    rows, cols = uv[inside, 1].long(), uv[inside, 0].long()
    d = out.depth[0, 0, rows, cols]
    far = out.depth.masked_fill(~out.hit_mask, float("inf"))
    # nearest rendered depth in the 5x5 pixels around (sub-pixel geometry such as a lamp cord is
    # hit by some pixel centres only)
    d_min = (-torch.nn.functional.max_pool2d(-far, 5, stride=1, padding=2))[0, 0, rows, cols]
    zin = z[inside]
    hit = d > 0
    in_front = zin[hit] < d_min[hit] * 0.99  # nearer than anything rendered around its pixel
    assert float(in_front.float().mean()) < 0.001, float(in_front.float().mean())
    assert float(((zin[hit] - d[hit]).abs() < 0.03 * d[hit]).float().mean()) > 0.2
    # 2) every rendered surface point has a sampled point nearby (dense, covers the visible surface)
    pts = cam.unproject(out.depth)[0][out.hit_mask[0, 0]]
    nn, _ = cKDTree(sample.points.numpy()).query(pts.numpy())
    spacing = math.sqrt(sum(p.area for p in scene.primitives) / 60000)
    assert float(np.median(nn)) < 1.5 * spacing
    # 3) sampled colours are the rendered colours: look at sampled points from camera 0's centre
    probe_pts = sample.points[inside][:300]
    probes = CameraParameters.look_at(torch.zeros_like(probe_pts), probe_pts, width=1, height=1, fov_y=0.01)
    seen = scene.render(probes)
    dist = probe_pts.norm(dim=-1)
    vis = (seen.depth.reshape(-1) - dist).abs() < 1e-3 * dist
    assert int(vis.sum()) > 30
    err = (seen.image.reshape(-1, 3)[vis] - sample.colors[inside][:300][vis]).abs().amax(-1)
    assert float((err < 1e-2).float().mean()) > 0.95


@pytest.mark.parametrize("name", SCENES)
def test_textures_are_rich_enough_that_a_pixel_shift_shows(scenes, name):
    img = scenes[name].start_view(256, 192).image[0]
    grad = 0.5 * ((img[:, :, 1:] - img[:, :, :-1]).abs().mean() + (img[:, 1:, :] - img[:, :-1, :]).abs().mean())
    assert float(grad) > 0.03
    for shifted, ref in ((img[:, :, 1:], img[:, :, :-1]), (img[:, 1:, :], img[:, :-1, :])):
        mse = float(((shifted - ref) ** 2).mean())
        assert 10 * math.log10(1.0 / mse) < 25.0  # a one-pixel misalignment costs PSNR visibly


def test_sample_surface_rejects_bad_count(scenes):
    with pytest.raises(ValueError, match="num_points"):
        scenes["room"].sample_surface(0)
