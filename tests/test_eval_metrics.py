"""Evaluation metrics on cases with known answers: identical inputs, known shifts, known rotations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.eval.camera_errors import (
    camera_following_errors,
    estimate_relative_pose,
    rotation_error_deg,
    translation_direction_error_deg,
    umeyama,
)
from worldstereo.eval.metrics import capped, psnr, ssim
from worldstereo.eval.reconstruction import reconstruction_curve
from worldstereo.eval.visibility import correspondence, cross_view_error, revisited_masks, sample_bilinear, visible_in
from worldstereo.scenes import get_scene

W, H = 64, 48
FX = 100.0
PLANE_Z = 2.0


def _random_image(seed: int = 0, h: int = H, w: int = W) -> torch.Tensor:
    return torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))


def _camera(x: float = 0.0) -> CameraParameters:
    """Camera looking down +z with its centre at (x, 0, 0)."""
    K = torch.tensor([[FX, 0.0, W / 2], [0.0, FX, H / 2], [0.0, 0.0, 1.0]])
    E = torch.eye(4)
    E[0, 3] = -x
    return CameraParameters(K, E, W, H)


def _plane_depth(z: float = PLANE_Z) -> torch.Tensor:
    return torch.full((1, 1, H, W), z)


# ---------------------------------------------------------------------------------------------- PSNR / SSIM
def test_psnr_known_values():
    a = _random_image() * 0.8
    assert psnr(a, a) == math.inf
    assert psnr(a, a + 0.1) == pytest.approx(20.0, abs=1e-4)  # mse 0.01
    b = a.clone()
    b[:, :, : W // 2] += 0.1  # error on the left half only
    assert psnr(a, b) == pytest.approx(10 * math.log10(1 / 0.005), abs=1e-4)
    right = torch.zeros(H, W, dtype=torch.bool)
    right[:, W // 2 :] = True
    assert psnr(a, b, right) == math.inf
    assert psnr(a, b, ~right) == pytest.approx(20.0, abs=1e-4)
    assert math.isnan(psnr(a, b, torch.zeros(H, W, dtype=torch.bool)))
    assert capped(math.inf) == 60.0 and capped(25.0) == 25.0


def test_psnr_and_ssim_reject_bad_input():
    with pytest.raises(ValueError, match="same shape"):
        psnr(_random_image(), _random_image(h=H + 1))
    with pytest.raises(ValueError, match="mask"):
        psnr(_random_image(), _random_image(1), torch.ones(H + 1, W, dtype=torch.bool))
    bad = _random_image()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ssim(bad, _random_image())


def test_ssim_known_values():
    a = _random_image()
    assert ssim(a, a) == pytest.approx(1.0, abs=1e-5)
    # constant images: variances and covariance vanish, SSIM = luminance term only
    c1 = 0.01**2
    expected = (2 * 0.5 * 0.6 + c1) / (0.5**2 + 0.6**2 + c1)
    assert ssim(torch.full((3, H, W), 0.5), torch.full((3, H, W), 0.6)) == pytest.approx(expected, abs=1e-5)
    # an independent image scores near 0; a change confined to a corner leaves a far mask untouched
    assert ssim(a, _random_image(1)) < 0.1
    b = a.clone()
    b[:, :10, :10] = 0.0
    far = torch.zeros(H, W, dtype=torch.bool)
    far[20:, 20:] = True  # > window radius (5) away from the changed corner
    assert ssim(a, b, far) == pytest.approx(1.0, abs=1e-5)
    near = torch.zeros(H, W, dtype=torch.bool)
    near[:10, :10] = True
    assert ssim(a, b, near) < 0.5


def test_separable_window_equals_the_2d_gaussian_convolution():
    """The SSIM blur (two 1-D passes) against the textbook 2-D 11x11 window applied with conv2d (reflect pad)."""
    import torch.nn.functional as F

    from worldstereo.eval.metrics import gaussian_blur

    x = torch.rand(2, 3, 37, 53, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    t = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(t**2) / (2 * 1.5**2))
    g /= g.sum()
    win = (g[:, None] * g[None, :]).expand(3, 1, 11, 11)
    reference = F.conv2d(F.pad(x, (5, 5, 5, 5), mode="reflect"), win, groups=3)
    assert torch.allclose(gaussian_blur(x), reference, atol=1e-13, rtol=0)


# ---------------------------------------------------------------------------------------------- visibility
def test_correspondence_of_a_known_shift():
    # camera B 0.06 to the right of A, plane at z = 2: every point moves fx * 0.06 / 2 = 3 pixels left in B
    a_cam, b_cam = _camera(0.0), _camera(0.06)
    corr = correspondence(a_cam, _plane_depth(), b_cam, _plane_depth())
    grid = a_cam.pixel_grid()
    expected = grid - torch.tensor([3.0, 0.0])
    torch.testing.assert_close(corr.uv[corr.mask], expected[corr.mask], atol=1e-4, rtol=0)
    # exactly the 3 leftmost columns of A fall outside B
    assert not corr.mask[:, :3].any() and corr.mask[:, 3:].all()

    img_a = _random_image()
    img_b = torch.zeros_like(img_a)
    img_b[:, :, : W - 3] = img_a[:, :, 3:]  # what B sees: A shifted 3 pixels left
    sse, n = cross_view_error(img_a, img_b, corr)
    assert n == H * (W - 3) and sse == pytest.approx(0.0, abs=1e-6)
    sse_wrong, _ = cross_view_error(img_a, img_a, corr)  # an image that did not move is inconsistent
    assert sse_wrong / (3 * n) > 0.05


def test_correspondence_excludes_occluded_points():
    a_cam, b_cam = _camera(0.0), _camera(0.06)
    depth_b = _plane_depth().clone()
    depth_b[..., 10:20, 30:40] = 1.0  # an occluder in front of the plane, seen by B
    corr = correspondence(a_cam, _plane_depth(), b_cam, depth_b)
    # A's pixels landing on the occluder (B columns 30..39 <- A columns 33..42) are hidden in B
    assert not corr.mask[12:18, 35:41].any()
    assert corr.mask[12:18, 45:50].all() and corr.mask[25:30, 35:41].all()


def test_visible_in_and_revisited_masks():
    cams = CameraParameters.cat([_camera(0.0), _camera(0.06), _camera(-0.06)])
    depths = _plane_depth().expand(3, 1, H, W).clone()
    pts = torch.tensor([[0.0, 0.0, 2.0], [0.0, 0.0, 1.0], [0.0, 0.0, -2.0]])
    vis = visible_in(pts, cams, depths)
    # on the plane: seen by all; floating in front of it: seen by none (depth test); behind the camera: none
    assert vis[:, 0].all() and not vis[:, 1].any() and not vis[:, 2].any()

    rev = revisited_masks(cams, depths)
    assert not rev[0].any()
    # frame 1 (moved right): its 3 rightmost columns are new; frame 2 (moved left): its 3 leftmost columns
    # were seen by neither earlier frame
    assert rev[1, 0, :, : W - 3].all() and not rev[1, 0, :, W - 3 :].any()
    assert rev[2, 0, :, 3:].all() and not rev[2, 0, :, :3].any()


def test_sample_bilinear_at_centres_and_midpoints():
    img = _random_image()
    uv = torch.tensor([[0.5, 0.5], [10.5, 20.5], [11.0, 20.5]])
    out = sample_bilinear(img, uv)
    torch.testing.assert_close(out[:, 0], img[:, 0, 0])
    torch.testing.assert_close(out[:, 1], img[:, 20, 10])
    torch.testing.assert_close(out[:, 2], 0.5 * (img[:, 20, 10] + img[:, 20, 11]))


# ---------------------------------------------------------------------------------------------- reconstruction
def _grid_points(spacing: float = 5.0) -> np.ndarray:
    g = np.arange(10) * spacing
    x, y = np.meshgrid(g, g)
    return np.stack([x.ravel(), y.ravel(), np.zeros(x.size)], axis=1)


def test_reconstruction_identical_shifted_and_partial():
    gt = _grid_points()
    same = reconstruction_curve(gt, gt, tau_max=1.0, num_thresholds=10)
    assert np.all(same.precision == 1) and np.all(same.recall == 1) and same.auc_f1 == pytest.approx(1.0)
    # shifted by 0.25: nothing within tau < 0.25, everything from tau = 0.3 on (thresholds 0.1 .. 1.0)
    shifted = reconstruction_curve(gt + [0.0, 0.0, 0.25], gt, tau_max=1.0, num_thresholds=10)
    np.testing.assert_allclose(shifted.f1, [0, 0, 1, 1, 1, 1, 1, 1, 1, 1])
    assert shifted.auc_f1 == pytest.approx(0.8)
    assert shifted.at(0.2).f1 == 0.0 and shifted.at(0.5).precision == 1.0
    # half of the surface: precision 1, recall 1/2, F1 2/3
    half = reconstruction_curve(gt[:50], gt, tau_max=1.0, num_thresholds=10)
    score = half.at(0.5)
    assert (score.precision, score.recall) == (1.0, 0.5) and score.f1 == pytest.approx(2 / 3)
    # outliers lower precision only
    noisy = reconstruction_curve(np.concatenate([gt, gt[:25] + [0.0, 0.0, 3.0]]), gt, tau_max=1.0)
    assert noisy.at(0.5).precision == pytest.approx(100 / 125) and noisy.at(0.5).recall == 1.0
    empty = reconstruction_curve(np.zeros((0, 3)), gt, tau_max=1.0)
    assert empty.auc_f1 == 0.0 and empty.num_predicted == 0
    with pytest.raises(ValueError, match="tau_max"):
        reconstruction_curve(gt, gt, tau_max=0.0)
    with pytest.raises(ValueError, match="predicted"):
        reconstruction_curve(gt[:, :2], gt, tau_max=1.0)


# ---------------------------------------------------------------------------------------------- camera errors
def test_umeyama_recovers_a_known_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(30, 3))
    R = Rotation.from_euler("xyz", [20, -35, 50], degrees=True).as_matrix()
    t = np.array([1.0, -2.0, 0.5])
    dst = 2.5 * src @ R.T + t
    sim = umeyama(src, dst)
    assert sim.scale == pytest.approx(2.5)
    np.testing.assert_allclose(sim.rotation, R, atol=1e-9)
    np.testing.assert_allclose(sim.translation, t, atol=1e-9)
    np.testing.assert_allclose(sim.apply(src), dst, atol=1e-9)
    rigid = umeyama(src, src @ R.T + t, with_scale=False)
    assert rigid.scale == 1.0 and rotation_error_deg(rigid.rotation, R) < 1e-6


def test_rotation_and_translation_errors_of_known_poses():
    R = Rotation.from_rotvec([0.0, 0.0, math.radians(30)]).as_matrix()
    assert rotation_error_deg(R, np.eye(3)) == pytest.approx(30.0)
    assert rotation_error_deg(R, R) == pytest.approx(0.0, abs=1e-6)
    assert translation_direction_error_deg([1, 0, 0], [1, 1, 0]) == pytest.approx(45.0)
    assert translation_direction_error_deg([1, 0, 0], [-2, 0, 0]) == pytest.approx(180.0)
    assert math.isnan(translation_direction_error_deg([0, 0, 0], [1, 0, 0]))


@pytest.fixture(scope="module")
def orbit_renders():
    scene = get_scene("tabletop")
    start = scene.start_camera(192, 144)
    cams = trajectory.preset("orbit_right", start, 5, scene_depth=scene.scene_depth, angle=16.0)
    return cams, scene.render(cams, antialias=2).image


def test_relative_pose_from_a_rendered_pair(orbit_renders):
    cams, images = orbit_renders
    rel = estimate_relative_pose(images[0], images[2], cams.K[0])
    assert rel is not None and rel.num_inliers >= 50
    T = (cams.w2c[2] @ torch.linalg.inv(cams.w2c[0])).double().numpy()
    assert rotation_error_deg(rel.rotation, T[:3, :3]) < 0.5
    assert translation_direction_error_deg(rel.translation, T[:3, 3]) < 4.0


def test_camera_following_errors_on_true_frames_and_reversed_frames(orbit_renders):
    cams, images = orbit_renders
    good = camera_following_errors(images, cams)
    path_length = float((cams.camera_centers[1:] - cams.camera_centers[:-1]).norm(dim=1).sum())
    assert good.num_failed == 0 and good.num_pairs == 4
    assert good.rot_err_deg < 0.5 and good.trans_err_deg < 5.0 and good.ate < 0.05 * path_length
    # frames played backwards move the wrong way: translation directions flip
    backwards = camera_following_errors(images.flip(0), cams)
    assert backwards.trans_err_deg > 150.0 and backwards.rot_err_deg > 2.0


def test_blockiness_by_construction():
    from worldstereo.eval.metrics import blockiness

    g = torch.Generator().manual_seed(0)
    noise = torch.rand(3, 64, 96, generator=g)
    assert blockiness(noise) == pytest.approx(1.0, abs=0.1)  # no lattice
    blocks = torch.rand(3, 4, 6, generator=g).repeat_interleave(16, 1).repeat_interleave(16, 2)
    assert blockiness(blocks + 0.01 * noise) > 5.0  # 16-px squares: all the energy on the lattice
    assert math.isnan(blockiness(torch.full((3, 32, 32), 0.5)))
