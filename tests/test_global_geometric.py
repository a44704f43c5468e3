"""GlobalGeometricMemory: merge/append/evict, spatial indexes, query aggregations, latent injection, state."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from worldstereo.camera import CameraParameters
from worldstereo.memory.encoders import FourierPointEncoder
from worldstereo.memory.global_geometric import GlobalGeometricMemory
from worldstereo.memory.spatial_index import (
    BallTreeIndex,
    CudaKNNIndex,
    KDTreeIndex,
    TorchBruteForceIndex,
    make_spatial_index,
)
from worldstereo.memory.voxel_hash import VoxelHashGrid

EYE = torch.eye(4)


def small(**kw) -> GlobalGeometricMemory:
    args = dict(point_cloud_dim=16, feature_dim=8, num_neighbors=4)
    args.update(kw)
    return GlobalGeometricMemory(**args)


def pose_at(center) -> torch.Tensor:
    """World-to-camera pose of an unrotated camera centred at ``center``."""
    T = torch.eye(4)
    T[:3, 3] = -torch.as_tensor(center, dtype=torch.float32)
    return T


# ----------------------------------------------------------------------------- update / merge
def test_update_merges_within_threshold_and_appends_the_rest():
    g = small()
    g.initialize(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]))
    new = torch.tensor([[0.005, 0, 0], [1.0, 0.02, 0], [2.0, 0, 0.009], [5.0, 5, 5]])
    out = g.update(new, pose_at([0, 0, -3]), merge_threshold=0.01)
    assert out == {"num_added": 2, "num_merged": 2, "total_points": 5, "num_evicted": 0}
    torch.testing.assert_close(g.point_cloud[0], torch.tensor([0.0025, 0, 0]))
    torch.testing.assert_close(g.point_cloud[2], torch.tensor([2.0, 0, 0.0045]))
    torch.testing.assert_close(g.point_cloud[3:], new[[1, 3]])
    assert g.observation_counts.tolist() == [2, 1, 2, 1, 1]
    assert g.last_seen.tolist() == [1, 0, 1, 1, 1]
    torch.testing.assert_close(g.observer_centers[0], torch.tensor([0.0, 0, -3]))


def test_running_mean_over_several_updates_and_observations():
    g = small()
    g.initialize(torch.tensor([[0.0, 0, 0]]), colors=torch.tensor([[0.0, 0, 0]]))
    # two new points in one update merge into the same stored point
    g.update(torch.tensor([[0.004, 0, 0], [0.0, 0.004, 0]]), EYE, colors=torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]))
    torch.testing.assert_close(g.point_cloud[0], torch.tensor([0.004 / 3, 0.004 / 3, 0]))
    torch.testing.assert_close(g.point_colors[0], torch.tensor([1 / 3, 1 / 3, 0]))
    g.update(torch.tensor([[0.0, 0, 0.008]]), EYE)  # no colour: colour kept
    torch.testing.assert_close(g.point_cloud[0], torch.tensor([0.001, 0.001, 0.002]))
    torch.testing.assert_close(g.point_colors[0], torch.tensor([1 / 3, 1 / 3, 0]))
    assert g.observation_counts.tolist() == [4] and g.num_points == 1


def test_merge_picks_the_nearest_stored_point_and_new_points_do_not_merge_together():
    g = small()
    g.initialize(torch.tensor([[0.0, 0, 0], [0.015, 0, 0]]))
    out = g.update(torch.tensor([[0.009, 0, 0], [3.0, 0, 0], [3.001, 0, 0]]), EYE, merge_threshold=0.01)
    assert (out["num_merged"], out["num_added"]) == (1, 2)
    assert g.observation_counts.tolist() == [1, 2, 1, 1]  # 0.009 is 0.006 from the second point
    torch.testing.assert_close(g.point_cloud[1], torch.tensor([0.012, 0, 0]))


def test_explicit_features_are_running_means_and_coordinate_embeddings_are_fourier():
    g = small()
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0]])
    g.initialize(pts)
    torch.testing.assert_close(g.point_embeddings, FourierPointEncoder(16, seed=0)(pts))
    torch.testing.assert_close(g.point_embeddings.norm(dim=1), torch.ones(2))
    f = torch.ones(1, 16)
    g.update(torch.tensor([[0.0, 0, 0.001]]), EYE, new_features=f)
    enc0 = FourierPointEncoder(16, seed=0)(pts[:1])
    torch.testing.assert_close(g.point_embeddings[0], ((enc0 + f) / 2)[0])
    torch.testing.assert_close(g.point_features, g.feature_head(g.point_embeddings))
    assert g.point_features.shape == (2, 8)


def test_eviction_removes_points_seen_longest_ago():
    g = small(max_points=4)
    g.initialize(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0]]))
    g.update(torch.tensor([[1.0, 0, 0.001]]), EYE)  # refresh point 1 (step 1)
    out = g.update(torch.tensor([[5.0, 0, 0], [6.0, 0, 0]]), EYE)  # step 2: 5 points > 4
    assert out["num_evicted"] == 1 and out["total_points"] == 4
    # points 0 and 2 are the oldest (step 0); the evenly spaced pick of 1 among them is the first
    xs = g.point_cloud[:, 0].tolist()
    assert xs == pytest.approx([1.0, 2.0, 5.0, 6.0])
    assert g.last_seen.tolist() == [1, 0, 2, 2]
    out = g.update(torch.tensor([[7.0, 0, 0], [8.0, 0, 0]]), EYE)  # step 3: drop steps 0 then 1
    assert g.point_cloud[:, 0].tolist() == pytest.approx([5.0, 6.0, 7.0, 8.0])
    # the merge index still works after compaction
    assert g.update(torch.tensor([[7.0, 0.005, 0]]), EYE)["num_merged"] == 1


def test_observe_is_update_with_coincident_points_without_moving_them():
    pts = torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [2.0, 0, 0], [3.0, 0, 0]])
    cols = torch.rand(4, 3)
    a, b = small(), small()
    a.initialize(pts, colors=cols)
    b.initialize(pts, colors=cols)
    pose = pose_at([0.5, -1.0, -2.0])
    out_a = a.observe(torch.tensor([1, 3, 3]), pose)  # duplicates count once
    out_b = b.update(pts[[1, 3]], pose, colors=cols[[1, 3]])
    assert out_a == out_b == {"num_added": 0, "num_merged": 2, "total_points": 4, "num_evicted": 0}
    assert torch.equal(a.observation_counts, b.observation_counts)
    assert torch.equal(a.last_seen, b.last_seen)
    torch.testing.assert_close(a.observer_centers, b.observer_centers)
    assert torch.equal(a.point_cloud, pts) and torch.equal(a.point_colors, cols)
    # last-seen decides eviction: observed points survive, the others go first
    c = small(max_points=4)
    c.initialize(pts)
    c.observe(torch.tensor([0, 2]), EYE)
    c.update(torch.tensor([[9.0, 0, 0], [10.0, 0, 0]]), EYE)
    assert c.point_cloud[:, 0].tolist() == pytest.approx([0.0, 2.0, 9.0, 10.0])
    with pytest.raises(ValueError, match="indices"):
        c.observe(torch.tensor([4]), EYE)
    with pytest.raises(ValueError, match="indices"):
        c.observe(torch.tensor([[0]]), EYE)


def test_initialize_past_capacity_keeps_an_even_subset():
    g = small(max_points=3)
    g.initialize(torch.arange(7.0).unsqueeze(1).repeat(1, 3))
    assert g.num_points == 3
    # all share step 0: the 4 evicted are evenly spaced (0, 2, 4, 6)
    assert g.point_cloud[:, 0].tolist() == [1.0, 3.0, 5.0]


def test_update_validation():
    g = small()
    g.initialize(torch.rand(5, 3))
    with pytest.raises(ValueError, match="new_points"):
        g.update(torch.rand(5, 2), EYE)
    with pytest.raises(ValueError, match="new_points"):
        g.update(torch.tensor([[float("nan"), 0, 0]]), EYE)
    with pytest.raises(ValueError, match="camera_pose"):
        g.update(torch.rand(5, 3), torch.eye(3))
    with pytest.raises(ValueError, match="camera_pose"):
        g.update(torch.rand(5, 3), 2 * EYE)
    with pytest.raises(ValueError, match="new_features"):
        g.update(torch.rand(5, 3), EYE, new_features=torch.rand(5, 7))
    with pytest.raises(ValueError, match="merge_threshold"):
        g.update(torch.rand(5, 3), EYE, merge_threshold=-1.0)
    with pytest.raises(ValueError, match="colors"):
        g.update(torch.rand(5, 3), EYE, colors=torch.rand(4, 3))
    with pytest.raises(ValueError, match="point_cloud"):
        g.initialize(torch.rand(5, 4))
    with pytest.raises(ValueError, match="features"):
        g.initialize(torch.rand(5, 3), features=torch.rand(5, 3))
    for kw in ({"update_frequency": "sometimes"}, {"spatial_index": "octree"}, {"max_points": 0}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            small(**kw)


def test_voxel_hash_matches_kdtree_after_appends_and_moves():
    rng = np.random.default_rng(0)
    pts = rng.random((3000, 3)).astype(np.float32)
    grid = VoxelHashGrid(0.1)
    grid.build(pts[:2000])
    grid.append(pts[2000:])
    moved = rng.choice(3000, 500, replace=False)
    pts[moved] += rng.normal(0, 0.05, (500, 3)).astype(np.float32)
    grid.move(moved, pts[moved])
    q = rng.random((4000, 3)).astype(np.float32)
    idx, dist = grid.nearest_within(q, 0.05)
    d_ref, i_ref = cKDTree(pts).query(q, k=1)
    expect = np.where(d_ref <= 0.05, i_ref, -1)
    assert (idx >= 0).sum() > 500 and (idx < 0).sum() > 500
    np.testing.assert_array_equal(idx, expect)
    np.testing.assert_allclose(dist[idx >= 0], d_ref[idx >= 0], rtol=1e-5)
    order = grid.brick_order(q)  # queries grouped by brick: same answers, in the queries' own order
    assert sorted(order.tolist()) == list(range(len(q))) and not np.array_equal(order, np.arange(len(q)))
    idx2, dist2 = grid.nearest_within(q, 0.05, order=order)
    assert np.array_equal(idx2, idx) and np.array_equal(dist2, dist)
    with pytest.raises(ValueError, match="radius"):
        grid.nearest_within(q, 0.06)
    with pytest.raises(ValueError, match="order"):
        grid.nearest_within(q, 0.05, order=order[:-1])


def test_voxel_hash_batch_update_and_compact_match_kdtree():
    rng = np.random.default_rng(1)
    pts = rng.random((2000, 3)).astype(np.float32)
    grid = VoxelHashGrid(0.1)
    grid.build(pts)
    for _ in range(6):  # moves (many across cells, some back and forth) and appends in one merge
        moved = np.sort(rng.choice(pts.shape[0], 400, replace=False))
        pts[moved] += rng.normal(0, 0.08, (400, 3)).astype(np.float32)
        extra = rng.random((300, 3)).astype(np.float32)
        grid.update(moved, pts[moved], extra)
        pts = np.concatenate([pts, extra])
    keep = np.zeros(pts.shape[0], bool)
    keep[rng.choice(pts.shape[0], 1500, replace=False)] = True
    grid.compact(keep)
    pts = pts[keep]
    with pytest.raises(ValueError, match="keep"):
        grid.compact(np.ones(3, bool))
    assert grid.num_points == 1500
    q = rng.random((5000, 3)).astype(np.float32)
    idx, dist = grid.nearest_within(q, 0.05)
    d_ref, i_ref = cKDTree(pts).query(q, k=1)
    np.testing.assert_array_equal(idx, np.where(d_ref <= 0.05, i_ref, -1))
    assert (idx >= 0).sum() > 500
    np.testing.assert_allclose(dist[idx >= 0], d_ref[idx >= 0], rtol=1e-5)
    assert np.isinf(dist[idx < 0]).all()


def test_voxel_hash_ties_pick_the_smallest_index_and_handle_negative_cells():
    grid = VoxelHashGrid(0.1)
    # points 1 and 2 are equally far from the query (mirror images), across a cell face at x = 0
    grid.build(np.array([[5.0, 5, 5], [-0.03, -0.2, -0.31], [0.03, -0.2, -0.31]], np.float32))
    idx, dist = grid.nearest_within(np.array([[0.0, -0.2, -0.31], [0.0, -0.2, -0.25]], np.float32), 0.05)
    assert idx.tolist() == [1, -1]
    np.testing.assert_allclose(dist[0], 0.03, rtol=1e-5)


def _reference_updates(stored, batches, thr):
    """Plain merge rule: nearest stored point (cKDTree) within thr -> running mean, else append."""
    pos, cnt = stored.astype(np.float64), np.ones(len(stored), np.int64)
    for new in batches:
        d, i = cKDTree(pos).query(new, k=1)
        hit = d <= thr
        sums = np.zeros_like(pos)
        k = np.bincount(i[hit], minlength=len(pos))
        np.add.at(sums, i[hit], new[hit])
        touched = k > 0
        pos[touched] = (pos[touched] * cnt[touched, None] + sums[touched]) / (cnt + k)[touched, None]
        cnt = cnt + k
        pos = np.concatenate([pos, new[~hit]])
        cnt = np.concatenate([cnt, np.ones((~hit).sum(), np.int64)])
    return pos, cnt


def test_many_updates_match_a_kdtree_reference():
    rng = np.random.default_rng(2)
    thr = 0.02
    stored = rng.random((3000, 3)) * [1.0, 1.0, 0.1]
    batches = []
    for _ in range(8):
        pick = rng.choice(len(stored), 300, replace=False)
        near = stored[pick] + rng.normal(0, 0.008, (300, 3))  # mostly re-observations
        far = rng.random((200, 3)) * [1.0, 1.0, 0.1] + [0, 0, 0.5]
        batches.append(np.concatenate([near, far]))
        stored = np.concatenate([stored, far])  # later batches re-observe new points too
    stored = stored[:3000]
    pos_ref, cnt_ref = _reference_updates(stored, batches, thr)
    g = small(max_points=100000)
    g.initialize(torch.tensor(stored, dtype=torch.float32))
    for b in batches:
        g.update(torch.tensor(b, dtype=torch.float32), EYE, merge_threshold=thr)
    assert g.num_points == len(pos_ref)
    assert g.observation_counts.tolist() == cnt_ref.tolist()
    assert (cnt_ref > 2).sum() > 100
    np.testing.assert_allclose(g.point_cloud.numpy(), pos_ref, atol=1e-5)


def test_merge_lookup_stays_exact_through_evictions():
    rng = np.random.default_rng(3)
    g = small(max_points=2000)
    g.initialize(torch.tensor(rng.random((2000, 3)), dtype=torch.float32))
    for step in range(6):  # each update re-observes some points and adds new ones: evictions
        cur = g.point_cloud.numpy()
        new = np.concatenate([cur[rng.choice(len(cur), 300)] + rng.normal(0, 0.01, (300, 3)),
                              rng.random((400, 3)) + [0, 0, step + 1.0]])
        out = g.update(torch.tensor(new, dtype=torch.float32), EYE, merge_threshold=0.02)
        assert out["num_evicted"] > 0 and g.num_points == 2000
    probe = g.point_cloud.numpy()[rng.choice(2000, 500)] + rng.normal(0, 0.015, (500, 3))
    probe = np.concatenate([probe, rng.random((500, 3)) * 7]).astype(np.float32)
    d, _ = cKDTree(g.point_cloud.numpy()).query(probe, k=1)
    out = g.update(torch.tensor(probe), EYE, merge_threshold=0.02)
    assert out["num_merged"] == int((d <= 0.02).sum()) > 200


# ----------------------------------------------------------------------------- update policy
@pytest.mark.parametrize(
    "freq, frame, clip", [("per_frame", True, False), ("per_step", False, True), ("manual", False, False)]
)
def test_should_update(freq, frame, clip):
    g = small(update_frequency=freq)
    assert g.update_frequency == freq
    assert (g.should_update("frame"), g.should_update("clip")) == (frame, clip)
    with pytest.raises(ValueError, match="event"):
        g.should_update("tick")


# ----------------------------------------------------------------------------- spatial indexes
def test_kd_tree_and_ball_tree_return_the_same_neighbours_as_brute_force():
    gen = torch.Generator().manual_seed(1)
    pts, q = torch.rand(500, 3, generator=gen), torch.rand(50, 3, generator=gen)
    results = [ix.build(pts).query(q, 8) for ix in (KDTreeIndex(), BallTreeIndex(), TorchBruteForceIndex())]
    for r in results[1:]:
        assert torch.equal(r.indices, results[0].indices)
        torch.testing.assert_close(r.distances, results[0].distances)
    torch.testing.assert_close(results[0].distances[:, 0], torch.cdist(q, pts).min(dim=1).values)
    assert KDTreeIndex().build(pts[:3]).query(q, 8).indices.shape == (50, 3)  # fewer points than k
    near = KDTreeIndex().build(pts).nearest(q, max_distance=0.0)
    assert bool((near.indices == -1).all())
    with pytest.raises(ValueError, match="empty"):
        KDTreeIndex().build(torch.zeros(0, 3)).query(q, 2)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cuda_knn_raises_clearly_without_cuda():
    with pytest.raises(RuntimeError, match="CUDA"):
        CudaKNNIndex()
    with pytest.raises(RuntimeError, match="CUDA"):
        small(spatial_index="cuda_knn")
    with pytest.raises(RuntimeError, match="CUDA"):
        make_spatial_index("cuda_knn")


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_knn_matches_kd_tree():
    gen = torch.Generator().manual_seed(2)
    pts, q = torch.rand(2000, 3, generator=gen), torch.rand(300, 3, generator=gen)
    ref = KDTreeIndex().build(pts).query(q, 16)
    got = CudaKNNIndex().build(pts.cuda()).query(q.cuda(), 16)
    assert torch.equal(got.indices.cpu(), ref.indices)
    torch.testing.assert_close(got.distances.cpu(), ref.distances)


# ----------------------------------------------------------------------------- query
def _cam(n=1):
    return CameraParameters.look_at([[0.0, 0.0, -3.0]] * n, [0.0, 0.0, 0.0], width=32, height=24)


def test_query_hand_computed_mean_max_weighted():
    g = small(num_neighbors=2)
    emb = torch.zeros(3, 16)
    emb[0, 0], emb[1, 0], emb[2, 0] = 1.0, 3.0, 100.0
    g.initialize(torch.tensor([[0.0, 0, 0], [1.0, 0, 0], [10.0, 0, 0]]), features=emb)
    with torch.no_grad():
        g.feature_head.weight.zero_()
        g.feature_head.bias.zero_()
        g.feature_head.weight[0, 0] = 1.0  # feature 0 = embedding 0
        g.feature_head.weight[1, 0] = -1.0  # feature 1 = -embedding 0
    q = torch.tensor([[[0.25, 0.0, 0.0]]])  # neighbours 0 (d=0.25) and 1 (d=0.75)
    mean = g.query(q, _cam(), "mean")[0, 0]
    mx = g.query(q, _cam(), "max")[0, 0]
    wtd = g.query(q, _cam(), "weighted")[0, 0]
    torch.testing.assert_close(mean[:2], torch.tensor([2.0, -2.0]))
    torch.testing.assert_close(mx[:2], torch.tensor([3.0, -1.0]))
    w0, w1 = 1 / 0.25, 1 / 0.75
    expect = (w0 * 1 + w1 * 3) / (w0 + w1)
    torch.testing.assert_close(wtd[:2], torch.tensor([expect, -expect]), rtol=1e-4, atol=1e-4)
    assert mean.shape == (8,)


def test_query_aggregations_differ_and_attention_is_view_dependent():
    g = small()
    gen = torch.Generator().manual_seed(3)
    g.initialize(torch.rand(200, 3, generator=gen))
    g.update(torch.rand(50, 3, generator=gen) + 0.5, pose_at([0, 0, -2]))
    q = torch.rand(2, 10, 3, generator=gen)
    outs = {a: g.query(q, _cam(2), a) for a in ("mean", "max", "weighted", "attention")}
    for a, o in outs.items():
        assert o.shape == (2, 10, 8) and bool(torch.isfinite(o).all()), a
    names = list(outs)
    for i in range(4):
        for j in range(i + 1, 4):
            assert not torch.allclose(outs[names[i]], outs[names[j]], atol=1e-4), (names[i], names[j])
    other = CameraParameters.look_at([3.0, 0.0, 0.0], [0.0, 0.0, 0.0], width=32, height=24)
    assert not torch.allclose(g.query(q, other, "attention"), outs["attention"], atol=1e-5)
    torch.testing.assert_close(g.query(q, other, "mean"), outs["mean"])


def test_query_empty_memory_and_validation():
    g = small()
    assert torch.equal(g.query(torch.rand(1, 4, 3), _cam(), "mean"), torch.zeros(1, 4, 8))
    g.initialize(torch.rand(3, 3))  # fewer points than num_neighbors=4: uses the 3
    torch.testing.assert_close(
        g.query(torch.rand(1, 2, 3), _cam(), "mean")[0, 0], g.point_features.mean(dim=0)
    )
    with pytest.raises(ValueError, match="query_points"):
        g.query(torch.rand(4, 3), _cam())
    with pytest.raises(ValueError, match="aggregation"):
        g.query(torch.rand(1, 4, 3), _cam(), "median")
    with pytest.raises(ValueError, match="camera_params"):
        g.query(torch.rand(2, 4, 3), _cam(3))


def test_ball_tree_memory_gives_the_same_query():
    pts = torch.rand(300, 3, generator=torch.Generator().manual_seed(4))
    q = torch.rand(1, 20, 3)
    a, b = small(), small(spatial_index="ball_tree")
    a.initialize(pts)
    b.initialize(pts)
    torch.testing.assert_close(a.query(q, _cam(), "weighted"), b.query(q, _cam(), "weighted"))


# ----------------------------------------------------------------------------- injection
def _wall_memory() -> GlobalGeometricMemory:
    """A dense square patch of points in the plane z = 0 covering x, y in [-0.5, 0.5]."""
    g = small()
    u = torch.linspace(-0.5, 0.5, 60)
    xx, yy = torch.meshgrid(u, u, indexing="ij")
    g.initialize(torch.stack([xx.ravel(), yy.ravel(), torch.zeros(xx.numel())], dim=1))
    return g


@pytest.mark.parametrize("method", ["addition", "concatenation", "cross_attention"])
def test_inject_changes_latent_only_where_memory_is_visible(method):
    g = _wall_memory()
    lat = torch.randn(2, 3, 4, 12, 16, generator=torch.Generator().manual_seed(5))
    # frame 0 looks at the patch, frame 1 looks away from it, frame 2 sees it off-centre
    cams = CameraParameters.look_at(
        [[0.0, 0.0, -2.0], [0.0, 0.0, -2.0], [1.2, 0.0, -2.0]],
        [[0.0, 0.0, 0.0], [0.0, 0.0, -5.0], [1.2, 0.0, 0.0]],
        width=64,
        height=48,
    )
    out = g.inject_to_latent(lat, cams, method)
    assert out.shape == lat.shape
    changed = (out != lat).any(dim=2)  # (B, T, H, W)
    assert bool(changed[:, 0].any()) and bool(changed[:, 2].any())
    assert not bool(changed[:, 1].any())  # nothing of the memory in view: exactly unchanged
    assert changed[:, 0].sum() > changed[:, 2].sum()  # more of the patch visible head-on
    # the change sits where the patch projects (x in [-0.5, 0.5] at depth 2 -> central columns)
    if method != "cross_attention":
        assert not bool(changed[:, 0, :, :2].any()) and not bool(changed[:, 0, :, -2:].any())
    # shared cameras (T of them) give the same result as B*T repeated ones
    torch.testing.assert_close(g.inject_to_latent(lat, CameraParameters.cat([cams, cams]), method), out)


def test_inject_addition_adds_the_rendered_features():
    g = _wall_memory()
    lat = torch.zeros(1, 1, 2, 6, 8)
    cam = CameraParameters.look_at([0.0, 0.0, -0.3], [0.0, 0.0, 0.0], width=8, height=6)  # patch fills view
    with torch.no_grad():
        out = g.inject_to_latent(lat, cam, "addition")
    head = g.latent_heads["c2"]
    feats = head.to_latent(g.point_features).detach()  # (N, 2)
    # every pixel is covered and holds one point's projected feature
    for c in range(2):
        vals = out[0, 0, c].flatten()
        d = (vals.unsqueeze(1) - feats[:, c].unsqueeze(0)).abs().min(dim=1).values
        assert float(d.max()) < 1e-5


def test_inject_validation_and_empty_memory():
    g = small()
    lat = torch.randn(1, 2, 3, 4, 5)
    torch.testing.assert_close(g.inject_to_latent(lat, _cam(), "addition"), lat)
    with pytest.raises(ValueError, match="injection_method"):
        g.inject_to_latent(lat, _cam(), "multiply")
    with pytest.raises(ValueError, match="latent"):
        g.inject_to_latent(torch.randn(2, 3, 4, 5), _cam())
    with pytest.raises(ValueError, match="latent"):
        g.inject_to_latent(torch.full((1, 1, 1, 2, 2), float("inf")), _cam())
    with pytest.raises(ValueError, match="camera_params"):
        g.inject_to_latent(lat, _cam(3))


# ----------------------------------------------------------------------------- state
def test_state_dict_round_trip_with_different_sizes_and_deterministic_heads():
    a = small()
    gen = torch.Generator().manual_seed(6)
    a.initialize(torch.rand(40, 3, generator=gen), colors=torch.rand(40, 3, generator=gen))
    a.update(torch.rand(30, 3, generator=gen), pose_at([0, 0, -2]), new_features=torch.rand(30, 16))
    lat = torch.randn(1, 2, 4, 6, 8, generator=gen)
    ref = a.inject_to_latent(lat, _cam(), "concatenation")  # creates the C=4 head
    sd = a.state_dict()
    assert sd["_pos"].shape == (a.num_points, 3) and sd["_embedding"].shape == (a.num_points, 16)
    b = small()  # same seed: identical heads; empty state of another size
    for name, p in a.named_parameters():
        if not name.startswith("latent_heads"):
            assert torch.equal(p, dict(b.named_parameters())[name])
    b.initialize(torch.rand(5, 3))
    b.load_state_dict(sd)
    assert b.num_points == a.num_points and b.step == a.step
    for prop in ("point_cloud", "point_colors", "observation_counts", "last_seen", "point_embeddings"):
        assert torch.equal(getattr(b, prop), getattr(a, prop)), prop
    torch.testing.assert_close(b.inject_to_latent(lat, _cam(), "concatenation"), ref)
    q = torch.rand(1, 5, 3, generator=gen)
    torch.testing.assert_close(b.query(q, _cam(), "attention"), a.query(q, _cam(), "attention"))
    # after loading, updates keep merging against the loaded points
    assert b.update(a.point_cloud[:3] + 1e-3, EYE)["num_merged"] == 3
    # heads do not depend on the global RNG
    torch.manual_seed(123)
    c = small()
    assert torch.equal(c.feature_head.weight, a.feature_head.weight)


def test_point_confidence_marks_generated_points_and_merges_keep_the_higher():
    ggm = GlobalGeometricMemory(point_cloud_dim=8, feature_dim=8)
    pts = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]])
    ggm.initialize(pts)
    assert torch.equal(ggm.point_confidence, torch.ones(2))  # observed by default
    pose = torch.eye(4)
    new = torch.tensor([[0.0, 0.0, 1.001], [5.0, 0.0, 1.0]])  # one merges into point 0, one is appended
    ggm.update(new, pose, merge_threshold=0.01, confidence=torch.tensor([0.25, 0.25]))
    assert ggm.point_confidence.tolist() == [1.0, 1.0, 0.25]  # a merge keeps the higher; the new one is generated
    ggm.update(torch.tensor([[5.0, 0.0, 1.001]]), pose, merge_threshold=0.01, confidence=torch.tensor([0.9]))
    assert ggm.point_confidence[2].item() == pytest.approx(0.9)  # observed later: upgraded
    state = ggm.state_dict()
    old = {k: v for k, v in state.items() if not k.endswith("_conf")}  # a snapshot from before confidence existed
    again = GlobalGeometricMemory(point_cloud_dim=8, feature_dim=8)
    again.load_state_dict(old)
    assert torch.equal(again.point_confidence, torch.ones(3))
    with pytest.raises(ValueError, match="confidence"):
        ggm.update(new, pose, confidence=torch.ones(3))


def test_benchmark_scene_merges_exactly_the_kdtree_neighbours():
    """The ``ggm_update`` benchmark's scene (a jittered ``z = sin x`` sheet, half the new points re-observing it,
    half in free space; fixed seed), reduced to 250K + 50K: every new point merges into its k-d-tree nearest
    stored point when that lies within the threshold, and only then; the rest are appended in order."""
    rng = np.random.default_rng(0)
    thr, side = 0.01, 500
    u, v = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
    x, y = u.ravel() * thr, v.ravel() * thr
    stored = (np.stack([x, y, np.sin(x)], 1) + rng.normal(0, 0.002, (side * side, 3))).astype(np.float32)
    seen = stored[rng.choice(len(stored), 25_000, replace=False)] + rng.normal(0, 0.004, (25_000, 3))
    unseen = rng.random((25_000, 3)) * [5.0, 5.0, 1.0] + [0.0, 0.0, 3.0]
    new = np.concatenate([seen, unseen])[rng.permutation(50_000)].astype(np.float32)
    g = GlobalGeometricMemory(max_points=1_000_000)
    g.initialize(torch.from_numpy(stored))
    g.update(torch.full((1, 3), 100.0), EYE, merge_threshold=thr)  # the merge index exists, as in a running pipeline
    before = g.point_cloud.numpy().copy()
    dist, nearest = cKDTree(before).query(new, k=1, distance_upper_bound=thr)
    merge = dist <= thr
    stats = g.update(torch.from_numpy(new), EYE, merge_threshold=thr)
    assert stats["num_merged"] == int(merge.sum()) > 20_000 and stats["num_added"] == int((~merge).sum())
    counts = g.observation_counts.numpy()
    expected = np.ones(len(before), np.int64)
    np.add.at(expected, nearest[merge], 1)
    assert np.array_equal(counts[: len(before)], expected)  # each merge went to the k-d tree's nearest point
    np.testing.assert_array_equal(g.point_cloud.numpy()[len(before):], new[~merge])  # appended in order


def test_merge_observations_is_the_running_mean_of_every_merge():
    """The compiled merge against plain NumPy: several new points into one stored point, optional colour and
    embedding, confidence kept at the higher, last-seen and observer set once, rows touched listed once."""
    from worldstereo.memory.merge_kernels import merge_observations

    rng = np.random.default_rng(5)
    n, m, d = 50, 400, 6
    target = np.where(rng.random(m) < 0.7, rng.integers(0, n, m), -1).astype(np.int64)
    new_pos, new_rgb = rng.random((m, 3), dtype=np.float32), rng.random((m, 3), dtype=np.float32)
    new_emb, new_conf = rng.random((m, d), dtype=np.float32), rng.random(m, dtype=np.float32)
    pos, rgb, emb = rng.random((n, 3), dtype=np.float32), rng.random((n, 3), dtype=np.float32), rng.random((n, d), dtype=np.float32)
    count = rng.integers(1, 5, n).astype(np.int64)
    conf, last_seen = rng.random(n, dtype=np.float32), np.zeros(n, np.int64)
    observer, center = np.zeros((n, 3), np.float32), np.array([1.0, 2.0, 3.0], np.float32)
    want = {}
    for name, old, new in (("pos", pos, new_pos), ("rgb", rgb, new_rgb), ("emb", emb, new_emb)):
        total = old.astype(np.float64) * count[:, None]
        np.add.at(total, target[target >= 0], new[target >= 0])
        want[name] = total / (count + np.bincount(target[target >= 0], minlength=n))[:, None]
    want_conf = conf.copy()
    np.maximum.at(want_conf, target[target >= 0], new_conf[target >= 0])
    want_count = count + np.bincount(target[target >= 0], minlength=n)
    order = rng.permutation(m)
    touched, moved = merge_observations(target, order, new_pos, new_rgb, new_emb, new_conf, pos, rgb, emb, count, conf, last_seen,
                                 observer, 7, center)
    hit = target[target >= 0]
    assert touched.tolist() == list(dict.fromkeys(target[order][target[order] >= 0].tolist()))  # in order of first merge
    assert np.array_equal(moved, pos[touched])
    assert (np.bincount(hit, minlength=n) > 2).sum() > 5
    for name, got in (("pos", pos), ("rgb", rgb), ("emb", emb)):
        np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-6)
    assert np.array_equal(count, want_count) and np.array_equal(conf, want_conf)
    assert np.array_equal(last_seen > 0, np.bincount(hit, minlength=n) > 0) and set(last_seen[last_seen > 0]) == {7}
    assert np.array_equal(observer[touched], np.tile(center, (len(touched), 1)))
    assert not observer[np.setdiff1d(np.arange(n), touched)].any()
    # without colours or embeddings (0 rows) only positions move
    rgb_before = rgb.copy()
    merge_observations(target, order, new_pos, np.zeros((0, 3), np.float32), np.zeros((0, d), np.float32), new_conf, pos,
                       rgb, np.zeros((0, d), np.float32), count, conf, last_seen, observer, 8, center)
    assert np.array_equal(rgb, rgb_before)


def test_update_on_gathered_rows_equals_the_in_place_update(monkeypatch):
    """A device's buffers are merged on gathered rows and written back; on the CPU the same update runs in
    place. Both give the same memory (forced here on CPU buffers)."""
    import worldstereo.memory.ggm_storage as storage_module

    rng = np.random.default_rng(6)
    stored = torch.tensor(rng.random((3000, 3)), dtype=torch.float32)
    feats = torch.tensor(rng.random((3000, 16)), dtype=torch.float32)

    def run() -> GlobalGeometricMemory:
        g = small(max_points=10_000)
        g.initialize(stored, features=feats, colors=torch.rand(3000, 3, generator=torch.Generator().manual_seed(1)))
        gen = np.random.default_rng(7)
        for step in range(3):
            near = stored.numpy()[gen.choice(3000, 800)] + gen.normal(0, 0.005, (800, 3))
            new = torch.tensor(np.concatenate([near, gen.random((300, 3)) + step + 1]), dtype=torch.float32)
            g.update(new, pose_at([0, 0, -step]), new_features=torch.tensor(gen.random((1100, 16)), dtype=torch.float32),
                     colors=torch.tensor(gen.random((1100, 3)), dtype=torch.float32),
                     confidence=torch.tensor(gen.random(1100), dtype=torch.float32), merge_threshold=0.02)
        return g

    in_place = run()
    monkeypatch.setattr(storage_module, "edit_in_place", lambda buf: False)
    gathered = run()
    assert (in_place.observation_counts > 2).sum() > 50
    for name in ("point_cloud", "point_colors", "point_embeddings", "observation_counts", "point_confidence",
                 "last_seen", "observer_centers"):
        assert torch.equal(getattr(in_place, name), getattr(gathered, name)), name


def test_voxel_hash_grows_repacks_and_stays_exact(monkeypatch):
    """From an empty grid: sparse appends that claim many bricks (table rehash, cell array and pool grown while
    the compiled pass resumes); every point moved into a small cube, then into another (full runs relocate
    until dead runs pass twice the points: a repack); a compaction. Every lookup equals a k-d tree's."""
    builds = []
    build = VoxelHashGrid.build
    monkeypatch.setattr(VoxelHashGrid, "build", lambda self, points: (builds.append(len(points)), build(self, points))[1])
    rng = np.random.default_rng(8)
    grid = VoxelHashGrid(0.1)
    pts = np.zeros((0, 3), np.float32)
    for _ in range(4):
        extra = (rng.random((6000, 3)) * 40 - 20).astype(np.float32)  # about one point per brick
        grid.append(extra)
        pts = np.concatenate([pts, extra])
    assert grid._state[0] > 10_000 and grid._table.shape[0] >= 3 * grid._state[0] and builds == [0]

    def check(q: np.ndarray) -> None:
        idx, dist = grid.nearest_within(q, 0.05)
        d_ref, i_ref = cKDTree(pts).query(q, k=1)
        np.testing.assert_array_equal(idx, np.where(d_ref <= 0.05, i_ref, -1))
        np.testing.assert_allclose(dist[idx >= 0], d_ref[idx >= 0], rtol=1e-5)
        assert (idx >= 0).sum() > len(q) // 4

    check(np.concatenate([pts[:2000] + 0.02, rng.random((2000, 3)) * 40 - 20]).astype(np.float32))
    everyone = np.arange(len(pts))
    for corner in (0.0, 5.0):  # 24K points into 2x2x2 cells, twice
        pts = (corner + rng.random((len(pts), 3)) * 0.2).astype(np.float32)
        grid.move(everyone, pts)
    assert len(builds) == 2  # the repack
    check((5.0 + rng.random((3000, 3)) * 0.22).astype(np.float32))
    keep = rng.random(len(pts)) < 0.05  # most points go: the grid repacks again
    grid.compact(keep)
    pts = pts[keep]
    assert len(builds) == 3 and grid.num_points == keep.sum()
    check((5.0 + rng.random((3000, 3)) * 0.2).astype(np.float32))


_CONCURRENT = r"""
import sys, threading
import numba, numpy as np
from worldstereo.memory.voxel_hash import VoxelHashGrid
rng = np.random.default_rng(9)
jobs = [(rng.random((20_000, 3), dtype=np.float32), rng.random((8000, 3), dtype=np.float32)) for _ in range(4)]

def work(pts, q):
    grid = VoxelHashGrid(0.05)
    grid.build(pts[:10_000])
    for k in range(3):
        grid.update(np.arange(0, 10_000, 3), pts[:10_000:3] + 0.001 * (k + 1), pts[10_000 + 2000 * k : 12_000 + 2000 * k])
    return grid.nearest_within(q, 0.02)

serial = [work(*job) for job in jobs]
results = [None] * len(jobs)
threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, work(*jobs[i]))) for i in range(len(jobs))]
for t in threads:
    t.start()
for t in threads:
    t.join()
same = all(np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1]) for a, b in zip(serial, results))
print(numba.threading_layer(), same, min(int((a[0] >= 0).sum()) for a in serial))
"""


def test_voxel_hash_from_concurrent_threads_equals_serial():
    """App sessions update their memories at the same time: parallel kernels launched from several threads give
    the serial answers, also under numba's workqueue layer (used where neither OpenMP nor TBB is available),
    which aborts the whole process on concurrent launches unless they are serialised (a fresh process)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, NUMBA_THREADING_LAYER="workqueue")
    out = subprocess.run([sys.executable, "-c", _CONCURRENT], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    layer, same, merged = out.stdout.split()
    assert layer == "workqueue" and same == "True" and int(merged) > 1000


def test_observe_in_place_equals_the_gathered_path(monkeypatch):
    """``observe`` on CPU buffers (one compiled pass, duplicates detected by last-seen) and on gathered rows
    (a device's path, forced here) leave the same memory; out-of-range and negative ids are refused."""
    import worldstereo.memory.global_geometric as ggm_module

    rng = np.random.default_rng(10)
    pts = torch.tensor(rng.random((5000, 3)), dtype=torch.float32)
    ids = [torch.tensor(rng.integers(0, 5000, 20_000)) for _ in range(3)]  # many duplicates per call

    def run() -> tuple[GlobalGeometricMemory, list]:
        g = small(max_points=10_000)
        g.initialize(pts)
        return g, [g.observe(i, pose_at([k, 0, -1])) for k, i in enumerate(ids)]

    a, out_a = run()
    monkeypatch.setattr(ggm_module, "edit_in_place", lambda buf: False)
    b, out_b = run()
    assert out_a == out_b and out_a[0]["num_merged"] == len(np.unique(ids[0].numpy()))
    assert torch.equal(a.observation_counts, b.observation_counts) and torch.equal(a.last_seen, b.last_seen)
    assert torch.equal(a.observer_centers, b.observer_centers) and a.observation_counts.max() == 4
    for bad in ([-1], [5000]):
        with pytest.raises(ValueError, match="indices"):
            a.observe(torch.tensor(bad), EYE)


def test_a_sparse_memory_at_capacity_is_not_rebuilt_at_every_eviction(monkeypatch):
    """About one point per brick (a far, sparse cloud), at capacity: each update evicts. The merge index repacks
    only once its bricks have doubled or its pool is mostly empty, not at every eviction, and stays exact."""
    builds = []
    build = VoxelHashGrid.build
    monkeypatch.setattr(VoxelHashGrid, "build", lambda self, points: (builds.append(len(points)), build(self, points))[1])
    rng = np.random.default_rng(11)
    g = small(max_points=20_000)
    g.initialize(torch.from_numpy(rng.random((20_000, 3), dtype=np.float32) * 30))
    for step in range(10):
        cur = g.point_cloud.numpy()
        new = np.concatenate([cur[rng.choice(len(cur), 500)] + 0.002,
                              rng.random((4000, 3)) * 30 + [0, 0, step]]).astype(np.float32)
        d, _ = cKDTree(cur).query(new, k=1)
        out = g.update(torch.from_numpy(new), EYE, merge_threshold=0.01)
        assert out["num_evicted"] > 0 and out["num_merged"] == int((d <= 0.01).sum())
    assert len(builds) <= 5, builds  # the first build, then a repack every few updates (10 before)
