"""Gap-free rendering of sparse points (splat_dense) and the coverage guard built on it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from worldstereo.camera import CameraParameters
from worldstereo.coverage import PARTLY_KNOWN, UNKNOWN, coverage_labels, path_coverage
from worldstereo.geometry.dense_splat import splat_dense
from worldstereo.geometry.splat import splat_points


def _plane(z: float, step: float, half: float, color: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Points on a grid of spacing ``step`` over [-half, half]^2 at depth ``z`` (fronto-parallel), one colour."""
    g = torch.arange(-half, half + 1e-9, step)
    y, x = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([x.reshape(-1), y.reshape(-1), torch.full((x.numel(),), z)], 1)
    return pts.float(), torch.full((pts.shape[0], 3), color)


def _camera(width: int = 96, height: int = 72, fov_deg: float = 60.0) -> CameraParameters:
    return CameraParameters.from_fov(fov_deg, width, height, degrees=True)


def test_levels_zero_is_the_plain_splat():
    pts, cols = _plane(2.0, 0.05, 1.5, 0.3)
    a, b = splat_dense(pts, cols, _camera(), levels=0), splat_points(pts, cols, _camera())
    assert torch.equal(a.point_ids, b.point_ids) and torch.equal(a.image, b.image)


def test_magnified_surface_has_no_gaps_and_keeps_its_depth():
    cam = _camera()
    f = float(cam.K[0, 0, 0])
    step = 3.0 * 2.0 / f  # points 3 pixels apart at depth 2
    pts, cols = _plane(2.0, step, 3.0, 0.7)
    plain = splat_points(pts, cols, cam)
    dense = splat_dense(pts, cols, cam, levels=3)
    assert float(plain.hole_mask.float().mean()) > 0.5  # a grid of holes
    assert float(dense.hole_mask.float().mean()) == 0.0
    assert torch.allclose(dense.depth, torch.full_like(dense.depth, 2.0), rtol=1e-5)
    assert torch.allclose(dense.image, torch.full_like(dense.image, 0.7), atol=1e-5)
    # every filled pixel names a real point lying at that pixel's depth
    ids = dense.point_ids[0]
    assert bool((ids >= 0).all())
    z = cam.world_to_camera(pts[ids.reshape(-1)])[0, :, 2].reshape(ids.shape)
    assert torch.allclose(z, dense.depth[0, 0], rtol=1e-5)


def test_far_points_do_not_show_through_a_magnified_near_surface():
    cam = _camera()
    f = float(cam.K[0, 0, 0])
    near, near_c = _plane(1.0, 3.0 * 1.0 / f, 0.2, 0.9)  # small, magnified: 3 px spacing
    far, far_c = _plane(4.0, 0.5 * 4.0 / f, 4.0, 0.1)  # dense background
    pts, cols = torch.cat([near, far]), torch.cat([near_c, far_c])
    plain = splat_points(pts, cols, cam)
    dense = splat_dense(pts, cols, cam, levels=3)
    # the near square covers |x|, |y| <= 0.2 at depth 1: pixels inside it
    uv, _ = cam.project(torch.tensor([[0.0, 0.0, 1.0]]))
    cx, cy = (int(v) for v in uv[0, 0])
    r = int(0.1 * f)  # the square's interior (a ring of one coarse pixel along its silhouette is left as rendered)
    inside = (slice(cy - r, cy + r), slice(cx - r, cx + r))
    assert float((plain.depth[0, 0][inside] > 2.0).float().mean()) > 0.3  # plain: background through the gaps
    assert bool((dense.depth[0, 0][inside] < 1.5).all())  # dense: the near surface only
    # and the background beside the near square stays background (no bleeding beyond a few pixels)
    assert float(dense.depth[0, 0, cy, cx + r + 16]) == pytest.approx(4.0, rel=1e-4)


def test_large_disocclusion_stays_a_hole():
    cam = _camera()
    pts, cols = _plane(2.0, 0.01, 2.0, 0.5)
    keep = pts[:, 0].abs() > 0.4  # a band with no points: a real unknown region ~30 px wide
    dense = splat_dense(pts[keep], cols[keep], cam, levels=3)
    uv, _ = cam.project(torch.tensor([[0.0, 0.0, 2.0]]))
    cx, cy = (int(v) for v in uv[0, 0])
    assert bool(dense.hole_mask[0, 0, cy - 10 : cy + 10, cx - 5 : cx + 5].all())
    assert float(dense.image[0, :, cy, cx].abs().sum()) == 0.0  # background value in holes


def test_coverage_labels_and_path_coverage():
    assert coverage_labels(np.array([0.0, PARTLY_KNOWN, UNKNOWN, 1.0])) == ["known", "partly", "partly", "unknown"][:2] + [
        "unknown", "unknown"]
    pts, _ = _plane(3.0, 0.02, 4.0, 0.5)
    eye = torch.zeros(3, 3)
    targets = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.3], [0.0, 0.0, -1.0]])  # ahead, half away, behind
    cams = CameraParameters.look_at(eye, targets, width=128, height=96)
    cov = path_coverage(pts, cams)
    assert cov.hole_share[0] < 0.05 and cov.labels[0] == "known"
    assert cov.hole_share[2] == 1.0 and cov.labels[2] == "unknown"
    assert cov.frames("unknown")[-1] == 2
    empty = path_coverage(torch.zeros(0, 3), cams)
    assert empty.labels == ["unknown"] * 3
