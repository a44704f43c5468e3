"""One scale: the pivot a camera path orbits, and depth scaled so the scene sits at it."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from worldstereo.camera import CameraParameters
from worldstereo.formats import read_camera_json
from worldstereo.scale import path_pivot, robust_depth_at, scale_to_pivot


def _orbit(centre: np.ndarray, radius: float, degrees: float, n: int = 9) -> CameraParameters:
    """Cameras on a horizontal arc around ``centre``, each looking at it."""
    eyes, targets = [], []
    for a in np.radians(np.linspace(0.0, degrees, n)):
        eyes.append(centre + radius * np.array([math.sin(a), 0.0, -math.cos(a)]))
        targets.append(centre)
    return CameraParameters.look_at(torch.tensor(np.array(eyes)), torch.tensor(np.array(targets)), width=64, height=48)


def test_orbit_pivot_is_the_looked_at_point():
    centre = np.array([0.3, -0.2, 2.0])
    cams = _orbit(centre, radius=1.5, degrees=60)
    pivot = path_pivot(cams)
    assert pivot is not None and pivot.kind == "axes"
    assert np.allclose(pivot.point, centre, atol=1e-5)
    assert pivot.depth == pytest.approx(1.5, rel=1e-5)  # the first camera is 1.5 from it
    assert np.allclose(pivot.pixel, [32.0, 24.0], atol=1e-3)  # on the optical axis: the image centre


def test_translation_has_no_pivot():
    eyes = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.0, 0.0], [1.0, 0.0, 0.0]])
    cams = CameraParameters.look_at(eyes, eyes + torch.tensor([0.0, 0.0, 1.0]), width=64, height=48)
    assert path_pivot(cams) is None
    align = scale_to_pivot(torch.ones(1, 1, 48, 64), cams[0], cams)
    assert align.factor == 1.0 and "no point" in align.message


def test_images_kind_official_files_orbit_the_origin(examples_dir):
    for path in sorted((examples_dir / "images").glob("*/camera.json")):
        raw = json.loads(path.read_text())
        cams, _ = read_camera_json(path)
        cams = CameraParameters(cams.intrinsics, cams.extrinsics, 1080, 720)
        pivot = path_pivot(cams)
        assert pivot is not None and pivot.kind == "origin"
        assert pivot.depth == pytest.approx(raw["extrinsic"][0][2][3], rel=1e-9)  # t_z of frame 0
        K = np.array(raw["intrinsic"][0])
        assert np.allclose(pivot.pixel, K[:2, 2], atol=1e-6)


def test_renders_kind_official_pivot_lies_on_every_optical_axis(examples_dir):
    for path in sorted((examples_dir / "reconstruction").glob("*/renders/traj_eloop/camera.json")):
        cams, _ = read_camera_json(path)
        pivot = path_pivot(cams)
        assert pivot is not None and pivot.kind == "axes" and pivot.depth > 0
        uv, z = cams.project(torch.tensor(pivot.point)[None].expand(len(cams), 1, 3).reshape(len(cams), 1, 3))
        principal = cams.intrinsics[:, :2, 2]
        assert torch.allclose(uv[:, 0].double(), principal.double(), atol=0.5)  # it projects to each image centre
        assert bool((z > 0).all())


def test_robust_depth_at_ignores_unknown_and_outliers():
    d = torch.full((1, 1, 40, 40), 2.0)
    d[0, 0, 20, 20] = 50.0  # one outlier
    d[0, 0, :5] = 0.0
    assert robust_depth_at(d, np.array([20.0, 20.0])) == pytest.approx(2.0)
    empty = torch.zeros(1, 1, 40, 40)
    empty[0, 0, 0, 0] = 3.0  # the window grows until it finds depth
    assert robust_depth_at(empty, np.array([30.0, 30.0])) == pytest.approx(3.0)
    assert robust_depth_at(torch.zeros(1, 1, 8, 8), np.array([4.0, 4.0])) is None


def test_scaled_depth_puts_the_surface_at_the_pivot():
    centre = np.array([0.0, 0.0, 4.0])
    cams = _orbit(centre, radius=4.0, degrees=40)  # first camera at the origin looking down +z
    g = torch.Generator().manual_seed(0)
    depth = 1.0 + 0.1 * torch.rand(1, 1, 48, 64, generator=g)
    align = scale_to_pivot(depth, cams[0], cams)
    scaled = depth * align.factor
    assert robust_depth_at(scaled, align.pivot.pixel) == pytest.approx(4.0, rel=1e-5)
    # the scene point seen at the pivot's pixel is (close to) the pivot itself
    pts = cams[0].unproject(scaled)[0]
    u, v = (int(x) for x in align.pivot.pixel)
    assert np.linalg.norm(pts[v, u].double().numpy() - centre) < 0.1 * 4.0


def test_model_scales_estimated_depth_but_not_a_given_one():
    from worldstereo.model import WorldStereo, WorldStereoConfig

    centre = np.array([0.0, 0.0, 5.0])
    cams = _orbit(centre, radius=5.0, degrees=30)
    image = (torch.rand(48, 64, 3) * 255).to(torch.uint8)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, depth_backend="prior"))
    info = model.start(image, camera=cams[0], align_to=cams)
    assert info.scale_factor != 1.0 and "scaled" in info.scale_message
    pts = model.ggm.point_cloud
    nearest = (pts - torch.tensor(centre, dtype=pts.dtype)).norm(dim=1).min()
    assert float(nearest) < 0.15 * 5.0  # the GGM holds surface at the pivot (unscaled: ~2 away)
    given = torch.full((48, 64), 1.0)
    kept = model.start(image, depth=given, camera=cams[0], align_to=cams)
    assert kept.scale_factor == 1.0 and kept.scene_depth == pytest.approx(1.0)
    forced = model.start(image, depth=given, camera=cams[0], align_to=cams, align_scale=True)
    assert forced.scale_factor == pytest.approx(5.0, rel=1e-4) and forced.scene_depth == pytest.approx(5.0, rel=1e-4)
    off = model.start(image, camera=cams[0], align_to=cams, align_scale=False)
    assert off.scale_factor == 1.0
