"""Z-buffer point splatting: hand-computed cases, fast vs reference, validation."""

from __future__ import annotations

import math

import pytest
import torch

from worldstereo.camera import CameraParameters
from worldstereo.geometry import RenderOutput, splat_points, splat_points_reference

SPLATS = [splat_points, splat_points_reference]
IMPLS = pytest.mark.parametrize("splat", SPLATS, ids=["fast", "reference"])

W, H = 32, 24
K = torch.tensor([[100.0, 0.0, 16.0], [0.0, 100.0, 12.0], [0.0, 0.0, 1.0]])


def camera(tz: float = 0.0) -> CameraParameters:
    """Identity rotation, world-to-camera translation (0, 0, tz): camera z = world z + tz."""
    E = torch.eye(4)
    E[2, 3] = tz
    return CameraParameters(K, E, W, H)


def point_at(row: float, col: float, z: float, tz: float = 0.0) -> list[float]:
    """World point whose projection in camera(tz) is (u, v) = (col, row) at camera depth z."""
    return [(col - 16.0) / 100.0 * z, (row - 12.0) / 100.0 * z, z - tz]


@IMPLS
def test_single_point_lands_in_its_pixel(splat):
    # u = 100 * 0.09 / 2 + 16 = 20.5, v = 100 * -0.095 / 2 + 12 = 7.25 -> pixel (7, 20), camera z = 2
    pts = torch.tensor([[0.09, -0.095, 1.0]])
    out = splat(pts, torch.tensor([[0.2, 0.4, 0.6]]), camera(tz=1.0), background=-1.0)
    assert isinstance(out, RenderOutput)
    assert out.image.shape == (1, 3, H, W) and out.depth.shape == (1, 1, H, W)
    assert out.hole_mask.shape == (1, 1, H, W) and out.point_ids.shape == (1, H, W)
    assert out.hole_mask.dtype == torch.bool and out.point_ids.dtype == torch.int64
    assert out.hole_mask.sum() == H * W - 1
    assert not out.hole_mask[0, 0, 7, 20]
    assert out.depth[0, 0, 7, 20] == pytest.approx(2.0, rel=1e-6)
    assert out.point_ids[0, 7, 20] == 0
    assert torch.allclose(out.image[0, :, 7, 20], torch.tensor([0.2, 0.4, 0.6]))
    holes = out.hole_mask[0, 0]
    assert (out.depth[0, 0][holes] == 0).all()
    assert (out.point_ids[0][holes] == -1).all()
    assert (out.image[0][:, holes] == -1.0).all()


@IMPLS
def test_nearer_point_wins_and_ties_go_to_lower_id(splat):
    pts = torch.tensor(
        [
            point_at(5.5, 5.5, 4.0),  # 0: far
            point_at(5.3, 5.8, 2.0),  # 1: near, same pixel (5, 5)
            point_at(10.5, 3.5, 3.0),  # 2: tie with 3 (identical point)
            point_at(10.5, 3.5, 3.0),  # 3
        ]
    )
    vals = torch.arange(4, dtype=torch.float32).view(4, 1)
    out = splat(pts, vals, camera())
    assert out.point_ids[0, 5, 5] == 1
    assert out.depth[0, 0, 5, 5] == pytest.approx(2.0, rel=1e-6)
    assert out.image[0, 0, 5, 5] == 1.0
    assert out.point_ids[0, 10, 3] == 2
    assert (~out.hole_mask).sum() == 2
    # Order of the points does not matter for who wins.
    out_rev = splat(pts.flip(0), vals.flip(0), camera())
    assert out_rev.point_ids[0, 5, 5] == 2  # point 1 is index 2 once flipped
    assert out_rev.point_ids[0, 10, 3] == 0  # the tie goes to the lower index


@IMPLS
@pytest.mark.parametrize("radius", [0, 1, 2])
def test_radius_footprint_is_a_square(splat, radius):
    pts = torch.tensor([point_at(10.5, 15.5, 3.0)])
    out = splat(pts, None, camera(), radius=radius)
    side = 2 * radius + 1
    covered = ~out.hole_mask[0, 0]
    assert covered.sum() == side * side
    expected = torch.zeros(H, W, dtype=torch.bool)
    expected[10 - radius : 10 + radius + 1, 15 - radius : 15 + radius + 1] = True
    assert torch.equal(covered, expected)
    assert torch.allclose(out.depth[0, 0][covered], torch.tensor(3.0))
    assert (out.point_ids[0][covered] == 0).all()


@IMPLS
def test_footprint_is_clipped_at_the_image_border(splat):
    pts = torch.tensor([point_at(0.5, 0.5, 3.0), point_at(23.5, 31.5, 3.0)])  # top-left, bottom-right
    out = splat(pts, None, camera(), radius=1)
    covered = ~out.hole_mask[0, 0]
    assert covered.sum() == 8
    assert covered[:2, :2].all() and covered[-2:, -2:].all()


@IMPLS
def test_radius_footprints_occlude_by_depth(splat):
    # A far point with a large footprint and a near one beside it: the overlap goes to the near one.
    pts = torch.tensor([point_at(10.5, 10.5, 5.0), point_at(10.5, 12.5, 2.0)])
    out = splat(pts, None, camera(), radius=2)
    assert (out.point_ids[0, 8:13, 10:15] == 1).all()
    assert (out.point_ids[0, 8:13, 8:10] == 0).all()


@IMPLS
def test_points_outside_the_depth_range_are_dropped(splat):
    pts = torch.tensor(
        [
            [0.0, 0.0, -2.0],  # behind the camera
            point_at(3.5, 3.5, 0.05),  # in front of near = 0.1
            point_at(6.5, 6.5, 9.0),  # beyond far = 8
            point_at(9.5, 9.5, 4.0),  # kept
        ]
    )
    out = splat(pts, torch.ones(4, 2), camera(), near=0.1, far=8.0)
    assert (~out.hole_mask).sum() == 1
    assert out.point_ids[0, 9, 9] == 3
    # Without a far plane the far point appears; a point behind the camera never does.
    out = splat(pts, None, camera(), near=0.1)
    assert (~out.hole_mask).sum() == 2 and out.point_ids[0, 6, 6] == 2


@IMPLS
def test_values_none_gives_zero_channels(splat):
    out = splat(torch.tensor([point_at(3.5, 4.5, 2.0)]), None, camera())
    assert out.image.shape == (1, 0, H, W)
    assert out.point_ids[0, 3, 4] == 0


@IMPLS
def test_no_points_gives_all_holes(splat):
    out = splat(torch.zeros(0, 3), torch.zeros(0, 5), camera(), background=0.5)
    assert out.hole_mask.all() and (out.point_ids == -1).all() and (out.depth == 0).all()
    assert out.image.shape == (1, 5, H, W) and (out.image == 0.5).all()


@IMPLS
def test_batched_cameras_render_independently(splat):
    cams = CameraParameters.cat([camera(0.0), camera(1.0)])
    pts = torch.tensor([point_at(4.5, 4.5, 3.0), point_at(4.5, 4.5, 3.0, tz=1.0)])
    out = splat(pts, None, cams)
    assert out.point_ids.shape == (2, H, W)
    # In camera 0 point 1 sits at camera z = 2 (< 3): it projects to another pixel.
    assert out.point_ids[0, 4, 4] == 0 and out.point_ids[1, 4, 4] == 1
    for b in range(2):
        single = splat(pts, None, cams[b])
        assert torch.equal(single.point_ids[0], out.point_ids[b])
        assert torch.equal(single.depth[0], out.depth[b])


def _random_scene(num_cameras: int, n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, CameraParameters]:
    """Random points around several cameras, keeping only points that project well away from any
    pixel boundary in every camera (so float rounding cannot change their pixel)."""
    g = torch.Generator().manual_seed(seed)
    eyes = torch.randn(num_cameras, 3, generator=g) * 0.3
    targets = torch.tensor([0.0, 0.0, 4.0]) + torch.randn(num_cameras, 3, generator=g) * 0.3
    cams = CameraParameters.look_at(eyes, targets, fov_y=math.radians(70), width=40, height=30)
    pts = torch.randn(n, 3, generator=g) * torch.tensor([2.0, 1.5, 2.0]) + torch.tensor([0.0, 0.0, 4.0])
    pts = torch.cat([pts, pts[: n // 20]])  # exact duplicates: depth ties
    uv = cams.to(dtype=torch.float64).project(pts.double())[0]
    frac = uv - uv.floor()
    safe = ((frac > 1e-3) & (frac < 1 - 1e-3)).all(dim=-1).all(dim=0)
    pts = pts[safe]
    vals = torch.rand(pts.shape[0], 4, generator=g)
    return pts, vals, cams


@pytest.mark.parametrize("num_cameras", [1, 3])
@pytest.mark.parametrize("radius", [0, 1, 2])
@pytest.mark.parametrize("with_values", [True, False])
def test_fast_matches_reference(num_cameras, radius, with_values):
    pts, vals, cams = _random_scene(num_cameras, 1500, seed=10 * num_cameras + radius)
    vals = vals if with_values else None
    kwargs = dict(radius=radius, near=0.5, far=7.0, background=0.25)
    fast = splat_points(pts, vals, cams, **kwargs)
    ref = splat_points_reference(pts, vals, cams, **kwargs)
    assert (~ref.hole_mask).sum() > 100  # the scene is not empty
    if radius == 0:
        assert ref.hole_mask.any()  # ... nor full
    assert torch.equal(fast.point_ids, ref.point_ids)
    assert torch.equal(fast.hole_mask, ref.hole_mask)
    assert torch.allclose(fast.depth, ref.depth, rtol=1e-5, atol=0)
    assert torch.equal(fast.image, ref.image)


def test_fast_matches_reference_on_chunk_boundaries(monkeypatch):
    import worldstereo.geometry.splat as splat_module

    pts, vals, cams = _random_scene(2, 3000, seed=7)
    monkeypatch.setattr(splat_module, "_CPU_CHUNK", 257)  # many chunks, ids offset per chunk
    fast = splat_points(pts, vals, cams, radius=1)
    ref = splat_points_reference(pts, vals, cams, radius=1)
    assert torch.equal(fast.point_ids, ref.point_ids)


def test_fast_matches_reference_with_int64_pixel_indices(monkeypatch):
    import worldstereo.geometry.splat as splat_module

    pts, vals, cams = _random_scene(3, 1500, seed=8)
    monkeypatch.setattr(splat_module, "_FLOAT_INDEX_LIMIT", 0)  # the path for huge buffers
    fast = splat_points(pts, vals, cams, radius=1)
    ref = splat_points_reference(pts, vals, cams, radius=1)
    assert torch.equal(fast.point_ids, ref.point_ids)


def test_reference_matches_brute_force_loop():
    # A per-pixel loop over the points, the most literal reading of the contract.
    pts, vals, cams = _random_scene(2, 300, seed=3)
    ref = splat_points_reference(pts, vals, cams, radius=1, near=0.5)
    uv, z = cams.project(pts)
    for b in range(2):
        best: dict[tuple[int, int], tuple[float, int]] = {}
        for i in range(pts.shape[0]):
            if z[b, i] < 0.5:
                continue
            r0, c0 = math.floor(uv[b, i, 1]), math.floor(uv[b, i, 0])
            for r in range(r0 - 1, r0 + 2):
                for c in range(c0 - 1, c0 + 2):
                    if 0 <= r < 30 and 0 <= c < 40:
                        cand = (float(z[b, i]), i)
                        best[(r, c)] = min(best.get((r, c), cand), cand)
        expected = torch.full((30, 40), -1, dtype=torch.int64)
        for (r, c), (_, i) in best.items():
            expected[r, c] = i
        assert torch.equal(ref.point_ids[b], expected)


@IMPLS
@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        (dict(points=torch.zeros(5, 2)), "points"),
        (dict(points=torch.tensor([[0.0, 0.0, float("nan")]])), "points"),
        (dict(points=torch.zeros(3, 3, dtype=torch.int64)), "points"),
        (dict(values=torch.zeros(4, 3)), "values"),
        (dict(values=torch.full((3, 2), float("inf"))), "values"),
        (dict(cameras="camera"), "cameras"),
        (dict(radius=-1), "radius"),
        (dict(radius=1.5), "radius"),
        (dict(near=0.0), "near"),
        (dict(far=1e-4), "far"),
        (dict(background=float("nan")), "background"),
    ],
)
def test_validation_names_the_argument(splat, kwargs, name):
    args = dict(points=torch.zeros(3, 3), values=torch.zeros(3, 2), cameras=camera())
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        splat(**args)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("radius", [0, 2])
def test_cuda_matches_cpu(radius):
    pts, vals, cams = _random_scene(3, 3000, seed=5)
    cpu = splat_points(pts, vals, cams, radius=radius)
    gpu = splat_points(pts.cuda(), vals.cuda(), cams, radius=radius)
    ref = splat_points_reference(pts.cuda(), vals.cuda(), cams, radius=radius)
    assert gpu.point_ids.is_cuda and gpu.image.is_cuda
    assert torch.equal(gpu.point_ids.cpu(), cpu.point_ids)
    assert torch.equal(ref.point_ids.cpu(), cpu.point_ids)
    assert torch.equal(gpu.image.cpu(), cpu.image)
