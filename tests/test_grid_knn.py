"""The grid k-NN behind ``cuda_knn``, run on the CPU: the same neighbours as a k-d tree, without brute force."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

import worldstereo.memory.grid_knn as grid_knn
from worldstereo.memory.global_geometric import GlobalGeometricMemory
from worldstereo.memory.spatial_index import GridKNNIndex, KDTreeIndex


def _surface(n: int, rng: np.random.Generator) -> np.ndarray:
    xy = rng.random((n, 2)) * 3.0
    return np.stack([xy[:, 0], xy[:, 1], np.sin(xy[:, 0])], 1)


def _check_exact(points: np.ndarray, queries: np.ndarray, k: int, **kw) -> float:
    """Grid answers against a float64 k-d tree; returns the share of identical indices."""
    got = GridKNNIndex(**kw).build(torch.from_numpy(points).float()).query(torch.from_numpy(queries).float(), k)
    p32, q32 = points.astype(np.float32).astype(np.float64), queries.astype(np.float32).astype(np.float64)
    ref_d, ref_i = cKDTree(p32).query(q32, k=k)
    ref_d, ref_i = ref_d.reshape(len(q32), -1), ref_i.reshape(len(q32), -1)
    idx = got.indices.numpy()
    assert idx.shape == ref_i.shape and (idx >= 0).all()
    assert all(len(set(row)) == len(row) for row in idx[:200])  # no point twice
    # ties aside: the neighbours found are exactly as near as the true ones, rank by rank
    true_d = np.linalg.norm(p32[idx] - q32[:, None, :], axis=-1)
    np.testing.assert_allclose(true_d, ref_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got.distances.numpy(), ref_d, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(got.distances.numpy(), axis=1) >= 0)
    return float((idx == ref_i).mean())


def test_surface_points_match_the_kd_tree():
    rng = np.random.default_rng(0)
    pts = _surface(20_000, rng)
    q = pts[rng.integers(0, len(pts), 3000)] + rng.normal(0, 0.02, (3000, 3))
    assert _check_exact(pts, q, 32) > 0.999


@pytest.mark.parametrize("k", [1, 8, 50])
def test_volumes_clusters_and_far_queries(k):
    rng = np.random.default_rng(k)
    dense = rng.normal(0, 0.01, (4000, 3))  # a tight blob
    sparse = rng.random((1000, 3)) * 10.0  # and a few points far apart
    pts = np.concatenate([dense, sparse])
    q = np.concatenate([rng.normal(0, 0.02, (500, 3)), rng.random((500, 3)) * 10.0,
                        rng.random((20, 3)) * 100.0 + 50.0])  # far outside the grid
    assert _check_exact(pts, q, k) > 0.99


def test_duplicates_small_sets_and_chunking():
    rng = np.random.default_rng(3)
    pts = np.repeat(rng.random((50, 3)), 4, axis=0)  # every point four times: ties everywhere
    q = rng.random((300, 3))
    _check_exact(pts, q, 12)
    _check_exact(pts[:5], q, 5)  # k = N
    _check_exact(pts[:1], q, 1)
    _check_exact(_surface(5000, rng), q, 16, max_pairs=2000)  # many small tables
    got = GridKNNIndex().build(torch.from_numpy(pts[:3]).float()).query(torch.zeros(4, 3), 8)
    assert got.indices.shape == (4, 3)  # fewer points than k


def test_it_searches_cells_not_every_point(monkeypatch):
    rng = np.random.default_rng(4)
    pts = torch.from_numpy(_surface(50_000, rng)).float()
    q = pts[:5000] + 0.01
    seen = []
    real = grid_knn._chunk_knn

    def counting(grid, queries, starts, counts, k, width):
        seen.append(queries.shape[0] * width)
        return real(grid, queries, starts, counts, k, width)

    monkeypatch.setattr(grid_knn, "_chunk_knn", counting)
    GridKNNIndex().build(pts).query(q, 32)
    examined = sum(seen)
    assert examined < 0.01 * q.shape[0] * pts.shape[0]  # under 1% of brute force's pairs
    assert examined >= 32 * q.shape[0]


def test_the_ggm_queries_alike_through_either_index():
    rng = np.random.default_rng(5)
    pts = torch.from_numpy(_surface(3000, rng)).float()
    q = (pts[:400] + 0.02).unsqueeze(0)
    from worldstereo.camera import CameraParameters

    cam = CameraParameters.look_at([1.5, 1.5, -4.0], [1.5, 1.5, 0.0], width=32, height=32)
    out = []
    for index in (KDTreeIndex(), GridKNNIndex()):
        mem = GlobalGeometricMemory(point_cloud_dim=16, feature_dim=8, num_neighbors=8)
        mem.initialize(pts)
        mem._knn = (mem._version, mem._pos.device, index.build(pts))
        with torch.no_grad():
            out.append(mem.query(q, cam, "weighted"))
    torch.testing.assert_close(out[0], out[1], atol=1e-5, rtol=1e-4)


def test_cell_size_fits_the_occupancy():
    rng = np.random.default_rng(6)
    for pts in (_surface(30_000, rng), rng.random((30_000, 3)), np.stack([np.linspace(0, 1, 30_000)] * 3, 1)):
        g = grid_knn.build_grid(torch.from_numpy(pts).float(), 32)
        occupancy = pts.shape[0] / g.keys.numel()
        assert 4 <= occupancy <= 64, occupancy  # about k / 2 on surfaces, volumes and lines alike
        assert torch.equal(torch.sort(g.order).values, torch.arange(pts.shape[0]))


def test_a_far_outlier_coarsens_the_grid_but_keeps_answers_exact():
    rng = np.random.default_rng(7)
    pts = np.concatenate([rng.random((3000, 3)) * 1e-3, [[1e6, -1e6, 1e6]]])  # keys would overflow int64 at a fine cell
    q = np.concatenate([rng.random((300, 3)) * 1e-3, [[1e6, -1e6, 1e6 + 1.0]]])
    g = grid_knn.build_grid(torch.from_numpy(pts).float(), 8)
    assert int(g.dims.max()) <= grid_knn.MAX_CELLS_PER_AXIS + 1
    _check_exact(pts, q, 8)
    near = grid_knn.nearest_within(grid_knn.build_grid(torch.from_numpy(pts).float(), cell=1e-5),
                                   torch.from_numpy(q).float(), 1e-5)
    ref_d, ref_i = cKDTree(pts.astype(np.float32).astype(np.float64)).query(q.astype(np.float32).astype(np.float64))
    want = np.where(ref_d <= 1e-5, ref_i, -1)
    assert np.array_equal(near.numpy(), want)


@pytest.mark.parametrize("radius", [0.005, 0.02])
def test_nearest_within_matches_a_bounded_kd_tree_query(radius):
    rng = np.random.default_rng(8)
    pts = _surface(20_000, rng)
    q = np.concatenate([pts[:2000] + rng.normal(0, 0.5 * radius, (2000, 3)), rng.random((500, 3)) * 3.0])
    p32, q32 = pts.astype(np.float32), q.astype(np.float32)
    got = grid_knn.nearest_within(grid_knn.build_grid(torch.from_numpy(p32), cell=radius), torch.from_numpy(q32), radius)
    d, i = cKDTree(p32.astype(np.float64)).query(q32.astype(np.float64))
    want = np.where(d <= radius, i, -1)
    g = got.numpy()
    assert (g >= 0).sum() > 500 and (g < 0).sum() > 100  # both outcomes occur
    assert np.array_equal(g >= 0, want >= 0) or np.mean((g >= 0) != (want >= 0)) < 1e-3  # float32 at the boundary
    both = (g >= 0) & (want >= 0)
    np.testing.assert_allclose(np.linalg.norm(p32[g[both]] - q32[both], axis=1), d[both], rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="exceeds the grid's cell"):
        grid_knn.nearest_within(grid_knn.build_grid(torch.from_numpy(p32), cell=radius), torch.from_numpy(q32), 2 * radius)
