"""The inspection history: the memories after any frame, exactly as a model that stopped there holds them; where
each point came from; the disagreement of a frame with the memory; across undo, snapshots and worlds."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from worldstereo import trajectory
from worldstereo.backends.factory import make_generator
from worldstereo.history import KeyframeBook
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.scenes import get_scene
from worldstereo.world import Trajectory, WorldPlan, build_world

W, H = 64, 48


def _model(scene="room", **config) -> WorldStereo:
    view = get_scene(scene).start_view(W, H)
    cfg = WorldStereoConfig(width=W, height=H, generator="warp", fill="telea", **config)
    model = WorldStereo(cfg)
    model.start(view.image, view.depth, view.camera)
    return model


def _path(model: WorldStereo, n: int = 10):
    return trajectory.preset("orbit_left", model.start_camera, n, scene_depth=model.scene_depth, angle=50.0)


def test_state_at_equals_a_model_that_stopped_after_that_frame():
    # a memory small enough to evict: merges, re-observations and evictions all happen on this path
    full = _model(max_points=3500)
    steps = list(full.generate(_path(full)))
    assert sum(s.memory.points_evicted for s in steps) > 0 and sum(s.memory.points_added for s in steps) > 0
    assert any(e.ggm.merged.uids.size for e in full.history.entries)  # new observations merged into stored points
    assert full.history.frame_ids == [s.frame_id for s in steps]
    for k in (0, 4, 9):
        short = _model(max_points=3500)
        stream = short.generate(_path(short))
        for _ in range(k + 1):
            next(stream)
        stream.close()
        st = full.history.state_at(steps[k].frame_id)
        g = short.ggm
        assert torch.equal(st.points, g.point_cloud) and torch.equal(st.colors, g.point_colors)
        assert torch.equal(st.observation_counts, g.observation_counts) and torch.equal(st.last_seen, g.last_seen)
        assert torch.equal(st.confidence, g.point_confidence)
        assert st.keyframe_ids == sorted(st.keyframe_ids, key=st.book.frame_ids.tolist().index)
        mine, theirs = st.book, KeyframeBook.of(short.ssm)
        for f in ("frame_ids", "tokens", "last_use", "first_write"):
            assert np.array_equal(getattr(mine, f), getattr(theirs, f)), f
        assert np.allclose(mine.importance, theirs.importance)
        assert set(st.keyframe_ids) == {k_.frame_id for k_ in short.keyframes}
    # evicted points stay inspectable: their last values, and when they went
    last = full.history.state_at(steps[-1].frame_id)
    assert last.evicted.uids.size > 0 and not np.isin(last.evicted.uids, last.uids.numpy()).any()


def test_every_point_a_frame_added_lies_in_its_view():
    model = _model()
    steps = list(model.generate(_path(model, 8)))
    for s in steps[1:]:
        st = model.history.state_at(s.frame_id)
        mine = st.source_frame == s.frame_id
        if not bool(mine.any()):
            continue
        uv, z = s.camera.project(st.points[mine].unsqueeze(0))
        inside = (z[0] > 0) & (uv[0, :, 0] >= 0) & (uv[0, :, 0] < W) & (uv[0, :, 1] >= 0) & (uv[0, :, 1] < H)
        assert bool(inside.all()), s.frame_id
    first = model.history.state_at(0)
    assert bool((first.source_frame == 0).all())  # the start view's points


class Altered:
    """A generator that hands back the frames of another, with one of them inverted."""

    def __init__(self, inner, bad: int):
        self.inner, self.bad, self.name = inner, bad, inner.name

    def begin_clip(self, ctx, cameras):
        self.inner.begin_clip(ctx, cameras)

    def generate_frame(self, ctx, camera, index):
        f = self.inner.generate_frame(ctx, camera, index)
        return dataclasses.replace(f, image=1.0 - f.image) if index == self.bad else f


def test_disagreement_is_zero_where_the_memory_is_exact_and_high_where_a_frame_was_altered():
    view = get_scene("room").start_view(W, H)  # anti-aliased as the oracle renders
    cfg = WorldStereoConfig(width=W, height=H, generator="oracle", scene="room")
    oracle = make_generator(cfg).generator
    model = WorldStereo(cfg, generator=Altered(oracle, bad=3))
    model.start(view.image, view.depth, view.camera)
    steps = list(model.generate(_path(model, 5)))
    dis = [model.history.entry(s.frame_id).disagreement for s in steps]
    assert dis[0] < 0.01  # at the start view's own pose the memory holds the truth, pixel for pixel
    assert dis[3] > 0.2 and dis[3] > 3 * max(dis[1], dis[2])  # (elsewhere: the splat against the truth, ~0.06)
    layers = model.history.entry(steps[3].frame_id).layers
    assert layers is not None and layers.disagreement is not None and layers.disagreement.mean() > 40


def test_undo_drops_a_paths_history_and_a_snapshot_starts_one(tmp_path):
    model = _model()
    first = list(model.generate(_path(model, 4)))
    kept = model.history.state_at(first[-1].frame_id)
    list(model.generate("orbit_right", num_frames=3))
    assert len(model.history) == 7
    model.undo()
    assert model.history.frame_ids == [s.frame_id for s in first]
    again = model.history.state_at(first[-1].frame_id)
    assert torch.equal(again.points, kept.points) and again.keyframe_ids == kept.keyframe_ids
    model.save(tmp_path / "snap")
    loaded = WorldStereo.load(tmp_path / "snap")
    base = loaded.history.state_at(loaded.frame_counter - 1)
    assert torch.equal(base.points, loaded.ggm.point_cloud) and len(loaded.history) == 0
    more = list(loaded.generate("orbit_right", num_frames=2))
    assert loaded.history.frame_ids == [s.frame_id for s in more]
    with pytest.raises(KeyError, match="not in the history"):
        loaded.history.state_at(first[0].frame_id)  # before the snapshot


def test_a_worlds_history_holds_its_folded_frames_by_trajectory(tmp_path):
    view = get_scene("room").start_view(W, H)
    cfg = WorldStereoConfig(width=W, height=H, generator="warp", fill="telea")
    model = WorldStereo(cfg)
    model.start(view.image, view.depth, view.camera)
    plan = WorldPlan(((Trajectory("left", "orbit_left", {"angle": 20.0}), Trajectory("up", "orbit_up", {"angle": 15.0})),),
                     frames=3)
    build_world(plan, tmp_path / "w", {"input": "room"}, lambda _s: model, progress=False, split_rounds=False)
    names = [model.history.path_name(e.path_index) for e in model.history.entries]
    assert names == ["left"] * 3 + ["up"] * 3  # the folds, not the trajectories' own runs
    assert model.history.frame_ids == list(range(1, 7))
    assert all(e.layers is not None and e.layers.render is not None for e in model.history.entries)
    st = model.history.state_at(6)
    assert torch.equal(st.points, model.ggm.point_cloud)


def test_the_history_is_bounded_oldest_detail_first():
    model = _model(history_mb=1)
    list(model.generate(_path(model, 12)))
    h = model.history
    assert h.nbytes <= 2**20
    kept = [e.frame_id for e in h.entries if e.layers is not None]
    dropped = [e.frame_id for e in h.entries if e.layers is None]
    assert not dropped or max(dropped) < min(kept, default=10**9)  # the oldest frames' layers went first
    st = h.state_at(h.frame_ids[-1])
    assert torch.equal(st.points, model.ggm.point_cloud)


def test_a_frame_that_only_reobserves_after_an_eviction_keeps_the_history_in_step():
    """A memory at capacity: some commits add no point (only re-observations), and the GGM's eviction mask of an
    earlier update must not be read for them (it was, and a long exploration stopped with 'history out of step')."""
    v = get_scene("room").start_view(128, 96)
    model = WorldStereo(WorldStereoConfig(width=128, height=96, generator="warp", fill="telea", depth_backend="prior",
                                          max_points=12_000))
    model.start(v.image, v.depth, v.camera)
    cams = trajectory.preset("orbit_left", model.start_camera, 12, scene_depth=model.scene_depth, angle=40.0)
    steps = list(model.generate(cams))
    assert sum(s.memory.points_evicted for s in steps) > 0
    assert any(s.memory.points_added == 0 for s in steps)
    state = model.history.state_at(steps[-1].frame_id)
    assert torch.equal(state.points, model.ggm.point_cloud.cpu())
    assert state.evicted.uids.shape[0] == sum(s.memory.points_evicted for s in steps)
