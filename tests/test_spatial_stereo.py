"""SpatialStereoMemory: storage, replacement strategies, constrained attention, retrieval, metadata."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from worldstereo.camera import CameraParameters
from worldstereo.memory.correspondence_mask import correspondence_mask, correspondence_mask_reference
from worldstereo.memory.masked_attention import masked_attention
from worldstereo.memory.spatial_stereo import SpatialStereoMemory

# A 100 x 100 camera at the origin looking down +z: world (x, y, z) -> pixel (50 + 100 x/z, 50 + 100 y/z).
K100 = torch.tensor([[100.0, 0.0, 50.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]])
FAR = (50.0, 50.0, 2.0)  # projects to pixel (2550, 2550): never near a test query


def cam100(batch: int = 1) -> CameraParameters:
    return CameraParameters(K100.expand(batch, 3, 3), torch.eye(4).expand(batch, 4, 4), 100, 100)


def entry(point, conf: float = 0.9, k: int = 4, far=FAR) -> tuple[torch.Tensor, torch.Tensor]:
    """Correspondences (1, k, 3): ``point`` first, the rest far away; confidences (1, k)."""
    corr = torch.tensor([point] + [far] * (k - 1), dtype=torch.float32)[None]
    return corr, torch.full((1, k), conf)


def add_one(mem: SpatialStereoMemory, point, conf: float = 0.9, feature=None, **meta) -> int:
    corr, c = entry(point, conf, mem.num_correspondences)
    f = torch.randn(1, mem.feature_dim) if feature is None else feature[None]
    return mem.add_to_memory(f, corr, c, metadata=meta or None)[0]


# ---------------------------------------------------------------- API.md example and basics
def test_api_example_usage_runs_with_random_tensors():
    spatial_memory = SpatialStereoMemory(memory_size=1024, feature_dim=768, num_correspondences=64, attention_window=7)
    n = 256
    features = torch.randn(n, 768)  # model.extract_features(image)
    correspondences = torch.randn(n, 64, 3)  # compute_correspondences(image)
    confidence = torch.rand(n, 64)  # compute_confidence(correspondences)
    indices = spatial_memory.add_to_memory(features=features, correspondences=correspondences, confidence=confidence)
    assert isinstance(indices, list) and all(isinstance(i, int) for i in indices)
    assert sorted(indices) == list(range(n))
    assert spatial_memory.occupancy == pytest.approx(n / 1024)
    assert spatial_memory.memory_bank.shape == (1024, 768)
    assert spatial_memory.correspondence_map.shape == (1024, 64, 3)
    torch.testing.assert_close(spatial_memory.memory_bank[indices], features)
    torch.testing.assert_close(spatial_memory.correspondence_map[indices], correspondences)


def test_add_fills_free_slots_then_replaces_and_returns_distinct_indices():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=2)
    f1 = torch.randn(3, 8)
    assert mem.add_to_memory(f1, torch.randn(3, 2, 3), torch.ones(3, 2)) == [0, 1, 2]
    f2 = torch.randn(2, 8)
    idx = mem.add_to_memory(f2, torch.randn(2, 2, 3), torch.ones(2, 2))
    assert idx == [3, 0]  # one free slot, then the oldest write (fifo)
    torch.testing.assert_close(mem.memory_bank[[3, 0]], f2)
    torch.testing.assert_close(mem.memory_bank[[1, 2]], f1[1:])
    f3 = torch.randn(4, 8)
    idx = mem.add_to_memory(f3, torch.randn(4, 2, 3), torch.ones(4, 2))
    assert sorted(idx) == [0, 1, 2, 3]  # a full batch replaces everything, each slot once
    torch.testing.assert_close(mem.memory_bank[idx], f3)
    assert mem.num_entries == 4 and mem.occupancy == 1.0


def test_batch_larger_than_memory_raises():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=2)
    with pytest.raises(ValueError, match="features"):
        mem.add_to_memory(torch.randn(5, 8), torch.randn(5, 2, 3), torch.ones(5, 2))
    assert mem.num_entries == 0


def test_clear_and_properties():
    mem = SpatialStereoMemory(memory_size=5, feature_dim=8, num_correspondences=2)
    mem.add_to_memory(torch.randn(2, 8), torch.randn(2, 2, 3), torch.ones(2, 2), metadata={"frame_index": 3})
    assert mem.num_entries == 2 and mem.occupancy == pytest.approx(0.4)
    assert mem.occupied_mask.tolist() == [True, True, False, False, False]
    assert mem.entry_frames.tolist() == [3, 3, -1, -1, -1]
    mem.clear()
    assert mem.num_entries == 0 and mem.occupancy == 0.0
    assert not mem.occupied_mask.any()
    assert mem.memory_bank.abs().sum() == 0 and mem.correspondence_map.abs().sum() == 0
    assert (mem.entry_frames == -1).all()
    assert mem.add_to_memory(torch.randn(1, 8), torch.randn(1, 2, 3), torch.ones(1, 2)) == [0]


# ---------------------------------------------------------------- replacement strategies
@pytest.mark.parametrize("strategy, victim", [("fifo", 0), ("lru", 1), ("importance_based", 2)])
def test_strategies_pick_different_slots(strategy, victim):
    # A (slot 0, conf 0.9), B (slot 1, conf 0.95), C (slot 2, conf 0.6); then A is retrieved.
    # fifo -> oldest write A; lru -> B (A was used after C's write); importance -> C (lowest).
    mem = SpatialStereoMemory(memory_size=3, feature_dim=8, num_correspondences=4, update_strategy=strategy)
    assert add_one(mem, (0.0, 0.0, 2.0), 0.9) == 0
    assert add_one(mem, (1.0, 0.0, 2.0), 0.95) == 1
    assert add_one(mem, (2.0, 0.0, 2.0), 0.6) == 2
    _, idx = mem.retrieve(torch.tensor([[[0.0, 0.0, 2.0]]]), cam100(), top_k=1)
    assert idx.tolist() == [[[0]]]
    assert add_one(mem, (3.0, 0.0, 2.0)) == victim


@pytest.mark.parametrize("strategy, victim", [("fifo", 0), ("lru", 1)])
def test_attention_counts_as_use_for_lru(strategy, victim):
    mem = SpatialStereoMemory(memory_size=2, feature_dim=8, num_correspondences=4, update_strategy=strategy)
    add_one(mem, (0.0, 0.0, 2.0))  # A, seen by the query below
    add_one(mem, (1.0, 0.0, 2.0))  # B, projects 50 px away
    _, w = mem.constrained_attention(torch.randn(1, 1, 8), torch.tensor([[[0.0, 0.0, 2.0]]]), cam100())
    assert w[0, 0].tolist() == [1.0, 0.0]
    assert add_one(mem, (2.0, 0.0, 2.0)) == victim


def test_importance_adds_attention_mass_to_mean_valid_confidence():
    mem = SpatialStereoMemory(memory_size=2, feature_dim=8, num_correspondences=4, update_strategy="importance_based")
    add_one(mem, (0.0, 0.0, 2.0), 0.9)  # A
    add_one(mem, (1.0, 0.0, 2.0), 0.6)  # B: less confident
    # Three queries that only see B give it a mass of 3.
    pts = torch.tensor([[[1.0, 0.0, 2.0], [1.01, 0.0, 2.0], [1.0, 0.01, 2.0]]])
    _, w = mem.constrained_attention(torch.randn(1, 3, 8), pts, cam100())
    assert w[0, :, 1].tolist() == [1.0, 1.0, 1.0]
    torch.testing.assert_close(mem.importance, torch.tensor([0.9, 3.6]))
    assert add_one(mem, (2.0, 0.0, 2.0)) == 0  # A is now the least important


def test_importance_uses_only_valid_confidences():
    mem = SpatialStereoMemory(memory_size=2, feature_dim=8, num_correspondences=4, update_strategy="importance_based")
    corr = torch.tensor([[0.0, 0.0, 2.0]]).expand(1, 4, 3)
    # A: one confident correspondence and three ignored ones -> mean valid 0.9 (0.3 over all).
    mem.add_to_memory(torch.randn(1, 8), corr, torch.tensor([[0.9, 0.1, 0.1, 0.1]]))
    mem.add_to_memory(torch.randn(1, 8), corr, torch.full((1, 4), 0.7))  # B: 0.7
    torch.testing.assert_close(mem.mean_valid_confidence, torch.tensor([0.9, 0.7]))
    assert add_one(mem, (2.0, 0.0, 2.0)) == 1


# ---------------------------------------------------------------- constrained attention
def test_constrained_attention_hand_computed_case():
    d = 16
    mem = SpatialStereoMemory(memory_size=10, feature_dim=d, num_correspondences=4, attention_window=7,
                              depth_tolerance=0.05)
    feats = torch.randn(7, d)
    points = [
        (0.1, 0.0, 2.0),  # 0: 5 px right, same depth -> allowed
        (0.2, 0.0, 2.0),  # 1: 10 px right -> outside the window
        (0.0, 0.0, 3.0),  # 2: on the query's ray but behind its surface -> occluded
        (0.0, 0.0, 1.5),  # 3: in front, another surface -> inconsistent depth
        (0.1, 0.0, 2.0),  # 4: like 0 but below the confidence threshold
        (0.12, 0.12, 2.0),  # 5: (6, 6) px away: Chebyshev 6 <= 7 (Euclidean 8.5) -> allowed
        (0.0, 0.0, 2.08),  # 6: depth 4 % off, within the 5 % tolerance -> allowed
    ]
    for i, p in enumerate(points):
        assert add_one(mem, p, 0.4 if i == 4 else 0.9, feats[i]) == i
    q = torch.randn(1, 1, d)
    out, w = mem.constrained_attention(q, torch.tensor([[[0.0, 0.0, 2.0]]]), cam100())
    allowed = [0, 5, 6]
    logits = [float(q[0, 0] @ feats[i]) / math.sqrt(d) for i in allowed]
    z = sum(math.exp(x) for x in logits)
    expected_w = torch.zeros(10)
    expected_w[allowed] = torch.tensor([math.exp(x) / z for x in logits])
    torch.testing.assert_close(w[0, 0], expected_w)
    torch.testing.assert_close(out[0, 0], expected_w[:7] @ feats)
    # The usage statistics follow the weights.
    torch.testing.assert_close(mem.attention_mass, expected_w)


def test_rows_without_allowed_entries_are_zero():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=4)
    add_one(mem, (0.0, 0.0, 2.0))
    pts = torch.tensor([[[0.0, 0.0, 2.0], [0.5, 0.5, 2.0], [0.0, 0.0, -2.0]]])  # seen / elsewhere / behind camera
    out, w = mem.constrained_attention(torch.randn(1, 3, 8), pts, cam100())
    assert w[0, 0].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert (w[0, 1:] == 0).all() and (out[0, 1:] == 0).all()
    torch.testing.assert_close(out[0, 0], mem.memory_bank[0])


def test_empty_memory_attention_is_zero():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=2)
    for use_mask in (True, False):
        out, w = mem.constrained_attention(torch.randn(2, 3, 8), torch.randn(2, 3, 3), cam100(), use_mask)
        assert out.shape == (2, 3, 8) and w.shape == (2, 3, 4)
        assert (out == 0).all() and (w == 0).all()


@pytest.mark.parametrize("memory_size", [8, 64])  # 5 of 8 slots used: dense path; 5 of 64: blocks path
def test_mask_off_is_plain_softmax_over_occupied_entries(memory_size):
    mem = SpatialStereoMemory(memory_size=memory_size, feature_dim=16, num_correspondences=4)
    mem.add_to_memory(torch.randn(5, 16), torch.randn(5, 4, 3), torch.ones(5, 4))
    q = torch.randn(2, 6, 16)
    out, w = mem.constrained_attention(q, torch.randn(2, 6, 3), cam100(), use_correspondence_mask=False)
    bank = mem.memory_bank[:5]
    expected = F.scaled_dot_product_attention(q[:, None], bank[None, None], bank[None, None])[:, 0]
    torch.testing.assert_close(out, expected)
    assert (w[..., 5:] == 0).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 6))
    torch.testing.assert_close(w[..., :5], torch.softmax(q @ bank.T / 4.0, -1))


def test_entry_mask_restricts_attention_to_chosen_entries():
    mem = SpatialStereoMemory(memory_size=8, feature_dim=16, num_correspondences=4)
    mem.add_to_memory(torch.randn(5, 16), torch.randn(5, 4, 3), torch.ones(5, 4))
    q = torch.randn(1, 3, 16)
    allowed = torch.zeros(8, dtype=torch.bool)
    allowed[[1, 3]] = True
    out, w = mem.constrained_attention(q, torch.randn(1, 3, 3), cam100(), use_correspondence_mask=False, entry_mask=allowed)
    assert (w[..., ~allowed] == 0).all()
    bank = mem.memory_bank[[1, 3]]
    torch.testing.assert_close(w[..., [1, 3]], torch.softmax(q @ bank.T / 4.0, -1))
    torch.testing.assert_close(out, w[..., [1, 3]] @ bank)
    with pytest.raises(ValueError, match="entry_mask"):
        mem.constrained_attention(q, torch.randn(1, 3, 3), cam100(), entry_mask=torch.ones(5, dtype=torch.bool))


def test_attention_output_is_differentiable_in_the_query():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=4)
    add_one(mem, (0.0, 0.0, 2.0))
    add_one(mem, (0.02, 0.0, 2.0))
    q = torch.randn(1, 1, 8, requires_grad=True)
    out, _ = mem.constrained_attention(q, torch.tensor([[[0.0, 0.0, 2.0]]]), cam100())
    out.sum().backward()
    assert q.grad is not None and q.grad.abs().sum() > 0


def random_scene(seed: int, B: int, M: int, K: int, N: int, D: int, dtype=torch.float32):
    """Correspondences and queries near a common surface z ~ 2, plus occluders and stragglers."""
    g = torch.Generator().manual_seed(seed)

    def surface(n):
        xy = (torch.rand(n, 2, generator=g) - 0.5) * 1.6
        z = 2.0 + 0.1 * torch.sin(3 * xy[:, :1]) + 0.01 * torch.randn(n, 1, generator=g)
        return torch.cat([xy * z / 2.0, z], -1)

    corr = surface(M * K).view(M, K, 3)
    shift = torch.rand(M, K, generator=g)
    corr[..., 2] += torch.where(shift < 0.15, 0.8, torch.where(shift < 0.25, -0.6, 0.0))  # off-surface
    conf = torch.rand(M, K, generator=g)
    feats = torch.randn(M, D, generator=g)
    pts = surface(B * N).view(B, N, 3)
    q = torch.randn(B, N, D, generator=g)
    return feats.to(dtype), corr.to(dtype), conf.to(dtype), pts.to(dtype), q.to(dtype)


@pytest.mark.parametrize(
    "B, cam_batch, window, tol, thr, M, dtype",
    [
        (1, 1, 7, 0.05, 0.5, 28, torch.float32),  # memory_size 32: the 8-bools-per-word paths
        (2, 2, 3, 0.05, 0.3, 24, torch.float32),
        (3, 1, 1, 0.2, 0.5, 16, torch.float32),
        (2, 2, 12, 0.02, 0.7, 60, torch.float64),
        (1, 1, 5, 0.1, 0.0, 40, torch.float32),
    ],
)
def test_fast_attention_matches_reference(B, cam_batch, window, tol, thr, M, dtype):
    K, N, D = 6, 50, 12
    feats, corr, conf, pts, q = random_scene(B * 100 + window, B, M, K, N, D, dtype)
    mem = SpatialStereoMemory(memory_size=M + 4, feature_dim=D, num_correspondences=K, attention_window=window,
                              correspondence_threshold=thr, depth_tolerance=tol).to(dtype=dtype)
    mem.add_to_memory(feats, corr, conf)
    cams = CameraParameters.look_at(
        [[0.0, 0.0, 0.0], [0.1, 0.05, 0.0], [-0.1, 0.0, 0.1]][:cam_batch], [0.0, 0.0, 2.0], fov_y=1.0,
        width=64, height=64,
    )
    mask = mem.correspondence_mask(pts, cams)
    assert torch.equal(mask, mem.correspondence_mask(pts, cams, reference=True))
    frac = mask.float().mean().item()
    assert 0.0 < frac < 0.9  # the comparison is only meaningful with both outcomes present
    assert (~mask.any(-1)).any() or window >= 5  # some rows see nothing (small windows)
    ref_out, ref_w = mem.constrained_attention_reference(q, pts, cams)
    out, w = mem.constrained_attention(q, pts, cams)
    torch.testing.assert_close(w, ref_w)
    torch.testing.assert_close(out, ref_out)
    for strategy in ("dense", "blocks"):  # both internal strategies, blocks with padding
        o2, w2 = masked_attention(q, mem.memory_bank, mask, 1 / math.sqrt(D), strategy=strategy, block_rows=7)
        torch.testing.assert_close(w2, ref_w)
        torch.testing.assert_close(o2, ref_out)


def test_fast_mask_is_exact_at_window_and_depth_boundaries():
    # Points exactly on the window edge (|du| == w or |dv| == w) and on the depth bound; query 2's
    # window edge u + 7 = 17.5 and v + 7 = 17.5 also fall exactly on grid-cell boundaries.
    quv = torch.tensor([[[10.0, 10.0], [20.5, 7.25], [10.5, 10.5]]])
    qz = torch.tensor([[2.0, 4.0, 2.0]])
    far = [1000.0, 1000.0]
    cuv = torch.tensor([[
        [[17.0, 10.0], [10.0, 3.0]],
        [[27.5, 14.25], [20.5, 0.0]],
        [[17.01, 10.0], [13.0, 10.0]],
        [[17.5, 10.5], far],
        [[10.5, 17.5], far],
    ]])
    cz = torch.tensor([[[2.0, 2.0], [4.2, 4.0], [2.0, 2.11], [2.0, 2.0], [2.0, 2.0]]])
    valid = torch.ones(5, 2, dtype=torch.bool)
    fast = correspondence_mask(quv, qz, cuv, cz, valid, 7, 0.05)
    ref = correspondence_mask_reference(quv, qz, cuv, cz, valid, 7, 0.05)
    assert torch.equal(fast, ref)
    # query 0: entry 0 on the edge (du = 7; dv = -7) -> yes; entry 2: 7.01 px, or depth 5.5 % off -> no.
    # query 1: entry 1 (du = dv = 7 and depth +5 %) -> yes. query 2: entries 3 (du = 7), 4 (dv = 7),
    # and 0 (du = 6.5), 2 (du = 6.51 at the same depth).
    assert fast[0].tolist() == [
        [True, False, False, False, False],
        [False, True, False, False, False],
        [True, False, True, True, True],
    ]


# ---------------------------------------------------------------- retrieval
def test_retrieve_ranks_by_nearest_valid_correspondence():
    mem = SpatialStereoMemory(memory_size=6, feature_dim=8, num_correspondences=2)
    corr = torch.tensor(
        [
            [[3.0, 0.0, 0.0], [9.0, 0.0, 0.0]],  # entry 0: nearest valid at distance 3
            [[1.0, 0.0, 0.0], [0.5, 0.0, 0.0]],  # entry 1: 0.5 is ignored (low confidence) -> 1
            [[0.0, 2.0, 0.0], [0.0, 0.0, 8.0]],  # entry 2: 2
            [[0.1, 0.0, 0.0], [0.1, 0.0, 0.0]],  # entry 3: no valid correspondence -> never retrieved
        ]
    )
    conf = torch.tensor([[0.9, 0.9], [0.9, 0.2], [0.6, 0.9], [0.1, 0.1]])
    feats = torch.randn(4, 8)
    mem.add_to_memory(feats, corr, conf)
    out, idx = mem.retrieve(torch.zeros(1, 1, 3), cam100(), top_k=5)
    assert idx.dtype == torch.int64 and idx.shape == (1, 1, 5) and out.shape == (1, 1, 5, 8)
    assert idx[0, 0].tolist() == [1, 2, 0, -1, -1]
    torch.testing.assert_close(out[0, 0, :3], feats[[1, 2, 0]])
    assert (out[0, 0, 3:] == 0).all()
    # A second batch element and query: from (0, 0, 8) the order changes.
    _, idx = mem.retrieve(torch.tensor([[[0.0, 0.0, 0.0], [0.0, 0.0, 8.0]]] * 2), cam100(2), top_k=2)
    assert idx[:, 0].tolist() == [[1, 2], [1, 2]] and idx[:, 1].tolist() == [[2, 1], [2, 1]]


@pytest.mark.parametrize("top_k, thr", [(1, 0.5), (5, 0.3), (40, 0.5)])
def test_retrieve_matches_brute_force_ranking(top_k, thr):
    g = torch.Generator().manual_seed(top_k)
    M, K = 30, 5
    mem = SpatialStereoMemory(memory_size=M + 2, feature_dim=4, num_correspondences=K, correspondence_threshold=thr)
    centres = torch.rand(M, 1, 3, generator=g) * 4
    corr = centres + 0.3 * torch.randn(M, K, 3, generator=g)  # clustered, overlapping entries
    conf = torch.rand(M, K, generator=g)
    conf[3] = 0.0  # entry 3 has no valid correspondence
    mem.add_to_memory(torch.randn(M, 4, generator=g), corr, conf)
    pts = torch.rand(2, 20, 3, generator=g) * 4
    _, idx = mem.retrieve(pts, None, top_k=top_k)
    # Brute force: every query against every valid correspondence.
    d = torch.cdist(pts.reshape(-1, 3), corr.reshape(-1, 3)).view(-1, M, K)
    d = d.masked_fill(conf < thr, float("inf")).amin(-1)  # (Q, M)
    n_ok = int((conf >= thr).any(-1).sum())
    expected = torch.full((40, top_k), -1)
    expected[:, : min(top_k, n_ok)] = torch.argsort(d, dim=-1)[:, : min(top_k, n_ok)]
    assert torch.equal(idx.reshape(40, top_k), expected)
    assert 3 not in idx


# ---------------------------------------------------------------- metadata and state
def test_metadata_is_stored_and_retrievable():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=2)
    cam = CameraParameters.look_at((1.0, 0.0, 0.0), (0.0, 0.0, 2.0), width=64, height=48)
    boxes = torch.tensor([[0.0, 0.0, 16.0, 16.0], [16.0, 0.0, 32.0, 16.0]])
    idx = mem.add_to_memory(torch.randn(2, 8), torch.randn(2, 2, 3), torch.ones(2, 2),
                            metadata={"frame_index": 7, "camera": cam, "pixel_boxes": boxes, "source": "keyframe"})
    w2c = torch.eye(4)
    w2c[:3, 3] = torch.tensor([0.0, 0.0, -1.0])
    idx2 = mem.add_to_memory(torch.randn(1, 8), torch.randn(1, 2, 3), torch.ones(1, 2),
                             metadata={"frame_index": [9], "camera": w2c})
    meta = mem.entry_metadata(idx + idx2)
    assert meta.frame_index.tolist() == [7, 7, 9]
    assert meta.has_camera.tolist() == [True, True, True]
    torch.testing.assert_close(meta.w2c[0], cam.extrinsics[0].float())
    torch.testing.assert_close(meta.intrinsics[1], cam.intrinsics[0].float())
    assert meta.image_size.tolist() == [[64, 48], [64, 48], [0, 0]]
    torch.testing.assert_close(meta.w2c[2], w2c)
    torch.testing.assert_close(meta.pixel_boxes[:2], boxes)
    assert meta.pixel_boxes[2].isnan().all()
    assert meta.extra == [{"source": "keyframe"}, {"source": "keyframe"}, {}]
    torch.testing.assert_close(mem.entry_boxes[idx], boxes)
    assert mem.entry_frames.tolist() == [7, 7, 9, -1]

    # state_dict round trip, unknown keys included.
    other = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=2)
    other.load_state_dict(mem.state_dict())
    assert other.entry_metadata([0]).extra == [{"source": "keyframe"}]
    torch.testing.assert_close(other.memory_bank, mem.memory_bank)
    assert other.add_to_memory(torch.randn(1, 8), torch.randn(1, 2, 3), torch.ones(1, 2)) == [3]


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"update_strategy": "random"}, "update_strategy"),
        ({"memory_size": 0}, "memory_size"),
        ({"attention_window": -1}, "attention_window"),
        ({"feature_dim": 2.5}, "feature_dim"),
        ({"correspondence_threshold": float("nan")}, "correspondence_threshold"),
        ({"depth_tolerance": -0.1}, "depth_tolerance"),
    ],
)
def test_bad_constructor_arguments_raise(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SpatialStereoMemory(**kwargs)


def test_bad_tensors_raise_naming_the_argument():
    mem = SpatialStereoMemory(memory_size=4, feature_dim=8, num_correspondences=2)
    f, c, p = torch.randn(2, 8), torch.randn(2, 2, 3), torch.ones(2, 2)
    bad_add = [
        ((torch.randn(2, 7), c, p), "features"),
        ((torch.randn(8), c, p), "features"),
        ((f, torch.randn(2, 3, 3), p), "correspondences"),
        ((f, torch.full((2, 2, 3), float("nan")), p), "correspondences"),
        ((f, c, torch.ones(2, 3)), "confidence"),
        ((f, c, torch.tensor([[1.0, float("inf")], [1.0, 1.0]])), "confidence"),
    ]
    for args, name in bad_add:
        with pytest.raises(ValueError, match=name):
            mem.add_to_memory(*args)
    for meta, name in [({"frame_index": 1.5}, "frame_index"), ({"camera": torch.eye(3)}, "camera"),
                       ({"pixel_boxes": torch.zeros(2, 3)}, "pixel_boxes"), ("frame 3", "metadata")]:
        with pytest.raises(ValueError, match=name):
            mem.add_to_memory(f, c, p, metadata=meta)
    assert mem.num_entries == 0  # nothing half-written
    mem.add_to_memory(f, c, p)
    q, pts = torch.randn(1, 3, 8), torch.randn(1, 3, 3)
    bad_attn = [
        ((torch.randn(1, 3, 7), pts, cam100()), "query"),
        ((torch.randn(3, 8), pts, cam100()), "query"),
        ((q, torch.randn(1, 4, 3), cam100()), "query_points"),
        ((q, torch.full((1, 3, 3), float("nan")), cam100()), "query_points"),
        ((q, pts, torch.eye(4)), "camera_params"),
        ((q, pts, cam100(2)), "camera_params"),
    ]
    for args, name in bad_attn:
        with pytest.raises(ValueError, match=name):
            mem.constrained_attention(*args)
    with pytest.raises(ValueError, match="query_points"):
        mem.retrieve(torch.randn(1, 3, 2), cam100())
    with pytest.raises(ValueError, match="top_k"):
        mem.retrieve(pts, cam100(), top_k=0)
    with pytest.raises(ValueError, match="indices"):
        mem.entry_metadata([4])
    with pytest.raises(ValueError, match="strategy"):
        masked_attention(q, mem.memory_bank, torch.ones(1, 3, 4, dtype=torch.bool), 1.0, strategy="sparse")
