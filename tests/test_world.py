"""Worlds: plans, rounds through one set of memories, resume, and the 3DGS dataset (geometry checked through
``transforms.json`` as a trainer would read it)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worldstereo.backends.depth_file import load_depth_map
from worldstereo.backends.factory import make_generator
from worldstereo.cli import main
from worldstereo.config import WorldStereoConfig
from worldstereo.exports import write_depth_png, write_image_png
from worldstereo.model import WorldStereo
from worldstereo.panorama.synthetic import render_panorama
from worldstereo.scenes import get_scene
from worldstereo.world import PlanError, Trajectory, WorldError, WorldPlan, build_world, panorama_plan, photo_plan

W, H = 64, 48


class Counting:
    """A generator that counts its frames and can stop the run (Ctrl-C) at a given call."""

    def __init__(self, inner, stop_at: int | None = None):
        self.inner, self.calls, self.stop_at = inner, 0, stop_at
        self.name = inner.name

    def begin_clip(self, ctx, cameras):
        self.inner.begin_clip(ctx, cameras)

    def generate_frame(self, ctx, camera, index):
        if self.stop_at is not None and self.calls == self.stop_at:
            raise KeyboardInterrupt
        self.calls += 1
        return self.inner.generate_frame(ctx, camera, index)


def _config() -> WorldStereoConfig:
    return WorldStereoConfig(width=W, height=H, generator="warp", fill="telea", depth_backend="prior")


def _room_world(generator, plan: WorldPlan, out, fingerprint=None, split_rounds=True, log=None):
    view = get_scene("room").start_view(W, H)

    def make_model(start: bool) -> WorldStereo:
        model = WorldStereo(_config(), generator=generator)
        if start:
            model.start(view.image, view.depth, view.camera)
        return model

    return build_world(plan, out, fingerprint or {"input": "scene room"}, make_model, progress=False,
                       split_rounds=split_rounds, log=log)


def test_plan_round_trip_and_default_plans(tmp_path):
    plan = panorama_plan(3, frames=9)
    assert [t.name for t in plan.trajectories] == ["walk_000", "walk_120", "walk_240"] and len(plan.rounds) == 1
    assert all(t.preset == "out_and_back" for t in plan.trajectories)
    plan.save(tmp_path / "plan.json")
    again = WorldPlan.load(tmp_path / "plan.json")
    assert again.to_json() == plan.to_json() and again.frames == 9
    photo = photo_plan(frames=5)
    assert [[t.name for t in r] for r in photo.rounds] == [["eloop"], ["up", "right", "left"]]


@pytest.mark.parametrize(("change", "message"), [
    ({"rounds": []}, "non-empty list of rounds"),
    ({"rounds": [[{"name": "a", "preset": "spin"}]]}, "unknown preset 'spin'"),
    ({"rounds": [[{"name": "a", "preset": "eloop", "params": {"rz": 1}}]]}, "has no parameter"),
    ({"rounds": [[{"name": "a", "preset": "eloop"}, {"name": "a", "preset": "eloop"}]]}, "used twice"),
    ({"rounds": [[{"name": "a/b", "preset": "eloop"}]]}, "letters, digits"),
    ({"rounds": [[{"name": "a", "preset": "eloop", "frames": 0}]]}, "integer from 1"),
    ({"rounds": [[{"name": "a", "preset": "eloop", "camera": "c.json"}]]}, "exactly one of"),
    ({"rounds": [[{"name": "a", "preset": "eloop", "params": {"rx": float("nan")}}]]}, "finite number"),
    ({"frames": 10**6, "rounds": [[{"name": "a", "preset": "eloop"}]]}, "integer from 1"),
])
def test_bad_plans_get_one_clear_error(change, message):
    with pytest.raises(PlanError, match=message):
        WorldPlan.from_json({"version": 1, **change})


def test_world_dataset_geometry_through_transforms_json(tmp_path):
    plan = WorldPlan(((Trajectory("left", "orbit_left", {"angle": 20.0}),),
                      (Trajectory("right", "orbit_right", {"angle": 20.0}),)), frames=4)
    summary = _room_world(make_generator(_config()).generator, plan, tmp_path / "w")
    data = json.loads((summary.dataset / "transforms.json").read_text())
    # each trajectory's first frame is the input pose, already in the dataset as input_000
    assert len(data["frames"]) == 1 + 3 + 3 and summary.skipped == 2 and data["ply_file_path"] == "pointcloud.ply"
    assert (data["w"], data["h"]) == (W, H) and data["depth_unit_scale_factor"] == 0.001
    assert sorted(p.name for p in (tmp_path / "w" / "state").iterdir()) == ["current"]  # one snapshot between rounds
    assert json.loads((tmp_path / "w" / "state" / "current" / "round.json").read_text())["round"] == 2
    model = WorldStereo.load(tmp_path / "w" / "state" / "current")
    pts = model.ggm.point_cloud.double()
    cols = model.ggm.point_colors.double()
    K = torch.tensor([[data["fl_x"], 0, data["cx"]], [0, data["fl_y"], data["cy"]], [0, 0, 1]], dtype=torch.float64)
    flip = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
    checked = 0
    for f in data["frames"]:
        c2w = torch.tensor(f["transform_matrix"], dtype=torch.float64) @ flip  # nerfstudio (OpenGL) -> OpenCV axes
        w2c = torch.linalg.inv(c2w)
        cam = pts @ w2c[:3, :3].T + w2c[:3, 3]
        z = cam[:, 2]
        uv = (cam @ K.T)[:, :2] / z.clamp_min(1e-9)[:, None]
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        image = np.asarray(Image.open(summary.dataset / f["file_path"])).astype(np.float64) / 255
        depth = load_depth_map(summary.dataset / f["depth_file_path"]).astype(np.float64)
        u, v = uv[inside, 0].long().numpy(), uv[inside, 1].long().numpy()
        known = depth[v, u] > 0  # (0: unknown, guessed or on an edge: not written)
        seen = known & (np.abs(depth[v, u] - z[inside].numpy()) < 0.01 * z[inside].numpy())  # the frame saw these points
        assert seen.sum() > 0.3 * known.sum(), f["file_path"]
        err = np.abs(image[v, u][seen] - cols[inside][seen].numpy()).mean(1)
        assert np.median(err) < 0.06, f["file_path"]  # the same colour (a merged point is a running mean)
        checked += int(seen.sum())
    assert checked > 7_000


def test_depth_files_round_trip(tmp_path):
    depth = np.random.default_rng(0).uniform(0.2, 60.0, (H, W)).astype(np.float32)
    depth[0, :5] = 0.0
    write_depth_png(tmp_path / "d.png", depth)
    back = load_depth_map(tmp_path / "d.png")
    assert back.dtype == np.float32 and back.shape == (H, W)
    np.testing.assert_allclose(back, depth, atol=0.0005 + 1e-6)
    assert (back[0, :5] == 0).all()


def test_resume_generates_only_what_is_left_and_matches_an_uninterrupted_world(tmp_path):
    plan = WorldPlan(((Trajectory("a", "orbit_left", {"angle": 15.0}), Trajectory("b", "pan_right", {"angle": 20.0})),
                      (Trajectory("c", "eloop", {"rx": 0.1, "ry": 0.1}),)), frames=3)
    inner = make_generator(_config()).generator
    first = Counting(inner, stop_at=3)  # Ctrl-C as the second trajectory begins
    with pytest.raises(KeyboardInterrupt):
        _room_world(first, plan, tmp_path / "w", split_rounds=False)
    meta = json.loads((tmp_path / "w" / "world.json").read_text())
    assert not meta["complete"] and meta["reason"] == "interrupted" and meta["done"] == ["a"] and meta["partial"]
    assert len(list((tmp_path / "w" / "world" / "images").glob("a_*.png"))) == 2  # the finished one is whole
    # what finished opens at once: its transforms.json and cloud, marked partial
    partial = json.loads((tmp_path / "w" / "world" / "transforms.json").read_text())
    assert [f["file_path"] for f in partial["frames"]] == ["images/input_000.png", "images/a_001.png", "images/a_002.png"]
    assert (tmp_path / "w" / "world" / "pointcloud.ply").is_file()
    # a half-done round keeps the memories it began with (one snapshot per round) and each finished trajectory
    state = tmp_path / "w" / "state"
    assert sorted(p.name for p in state.iterdir()) == ["current", "done"]
    assert json.loads((state / "current" / "round.json").read_text())["round"] == 0
    assert [p.name for p in (state / "done").iterdir()] == ["a.safetensors"]
    good = (state / "done" / "a.safetensors").read_bytes()
    (state / "done" / "a.safetensors").write_bytes(good[: len(good) // 2])  # a damaged result: one clear error
    with pytest.raises(WorldError, match=r"a\.safetensors: cannot be read back as a finished trajectory"):
        _room_world(Counting(inner), plan, tmp_path / "w", split_rounds=False)
    (state / "done" / "a.safetensors").write_bytes(good)
    notes: list[str] = []
    second = Counting(inner)
    summary = _room_world(second, plan, tmp_path / "w", split_rounds=False, log=notes.append)
    assert notes[0].startswith("resuming: 1 of 3") and notes[1].startswith("depth: ") and notes[2].startswith("generator: ")
    assert second.calls == 6 and summary.trajectories == ["b", "c"]  # only the rest ran ("a" folded from its file)
    assert sorted(p.name for p in state.iterdir()) == ["current"]
    whole = Counting(inner)
    straight = _room_world(whole, plan, tmp_path / "x", split_rounds=False)
    assert whole.calls == 9 and straight.points == summary.points
    resumed = WorldStereo.load(tmp_path / "w" / "state" / "current")
    direct = WorldStereo.load(tmp_path / "x" / "state" / "current")
    assert torch.equal(resumed.ggm.point_cloud, direct.ggm.point_cloud)
    assert [k.frame_id for k in resumed.keyframes] == [k.frame_id for k in direct.keyframes]
    for name in ("b_002.png", "c_001.png"):  # (an eloop ends where it began: c_002 repeats the input pose)
        assert np.array_equal(np.asarray(Image.open(tmp_path / "w" / "world" / "images" / name)),
                              np.asarray(Image.open(tmp_path / "x" / "world" / "images" / name)))


def test_a_round_starts_every_trajectory_from_the_same_memories(tmp_path):
    """b runs after a in plan order but from the round's start: it is what it would be alone."""
    a, b = Trajectory("a", "orbit_left", {"angle": 15.0}), Trajectory("b", "orbit_right", {"angle": 15.0})
    gen = make_generator(_config()).generator
    _room_world(gen, WorldPlan(((a, b),), frames=3), tmp_path / "both", split_rounds=False)
    _room_world(gen, WorldPlan(((b,),), frames=3), tmp_path / "alone")
    for i in (1, 2):  # (frame 0 is the input pose)
        one = np.asarray(Image.open(tmp_path / "both" / "world" / "images" / f"b_{i:03d}.png"))
        two = np.asarray(Image.open(tmp_path / "alone" / "world" / "images" / f"b_{i:03d}.png"))
        assert np.array_equal(one, two)


def test_cli_world_from_a_panorama_and_refusals(tmp_path, capsys):
    pano = render_panorama("room", 256, antialias=1)
    write_image_png(tmp_path / "pano.png", pano.image)
    args = ["world", "--panorama", str(tmp_path / "pano.png"), "--trajectories", "2", "--frames", "3",
            "--size", f"{W}x{H}", "--fill", "telea", "--depth-backend", "prior", "--quiet", "--no-ray", "--no-mesh"]
    assert main([*args, "--out", str(tmp_path / "w")]) == 0
    meta = json.loads((tmp_path / "w" / "world.json").read_text())
    assert "mesh" not in meta["exports"] and not (tmp_path / "w" / "world" / "mesh.glb").exists()
    assert meta["complete"] and meta["done"] == ["walk_000", "walk_180"] and meta["start"]["kind"] == "panorama"
    assert WorldPlan.load(tmp_path / "w" / "plan.json").to_json() == panorama_plan(2, 3).to_json()
    data = json.loads((tmp_path / "w" / "world" / "transforms.json").read_text())
    names = [Path(f["file_path"]).stem for f in data["frames"]]
    # every real view first: the bank's 27 views and the two poles, at the bank's own size and cameras
    assert names[:29] == [f"view_{i:04d}" for i in range(29)]
    assert {(f["w"], f["h"]) for f in data["frames"][:29]} == {(832, 480)}
    assert all((f["w"], f["h"]) == (W, H) for f in data["frames"][29:])
    assert "fl_x" not in data and all("fl_x" in f and "mask_path" in f for f in data["frames"])  # per-frame intrinsics
    assert len(names) == 29 + 2 * 3 - len(meta["skipped"]) and len(meta["skipped"]) >= 1  # walk_000 starts at view 0000
    capsys.readouterr()
    # the same folder with another world: refused, naming what differs; nothing touched
    other = [*args[:4], "3", *args[5:]]
    assert main([*other, "--out", str(tmp_path / "w")]) == 2
    assert "holds a world of another plan" in capsys.readouterr().err
    bigger = [*args[:8], "96x64", *args[9:]]
    assert main([*bigger, "--out", str(tmp_path / "w")]) == 2
    assert "holds another world (size: there [64, 48], here [96, 64])" in capsys.readouterr().err
    # a bad plan: one clear error
    (tmp_path / "bad.json").write_text(json.dumps({"rounds": [[{"name": "x", "preset": "warp_speed"}]]}))
    assert main([*args, "--plan", str(tmp_path / "bad.json"), "--out", str(tmp_path / "b")]) == 2
    assert "unknown preset 'warp_speed'" in capsys.readouterr().err
    (tmp_path / "broken.json").write_text("{not json")
    assert main([*args, "--plan", str(tmp_path / "broken.json"), "--out", str(tmp_path / "b")]) == 2
    assert "broken.json: broken JSON" in capsys.readouterr().err
    with pytest.raises(WorldError, match="holds another world"):
        _room_world(make_generator(_config()).generator, panorama_plan(1, 3), tmp_path / "w")


def test_a_run_stopped_while_saving_a_round_resumes_from_the_newest_complete_snapshot(tmp_path):
    """The end of a round saves ``next``, swaps it in for ``current`` and removes the round's results: stopped
    anywhere in that, the newest complete snapshot (``round.json`` written last) is the one resumed from."""
    from worldstereo.world.runner import WorldError, _State

    plan = WorldPlan(((Trajectory("a", "orbit_left", {"angle": 15.0}),),), frames=3)
    _room_world(make_generator(_config()).generator, plan, tmp_path / "w")
    state = _State(tmp_path / "w" / "state")
    assert state.newest() == (state.current, {"round": 1, "evictions": 0})
    state.current.rename(state.next)  # stopped between the two renames: the new one is still "next"
    shutil.copytree(state.next, state.previous)
    (state.previous / "round.json").write_text('{"round": 0, "evictions": 0}')
    assert state.newest()[0] == state.next
    shutil.copytree(state.next, state.current)
    (state.current / "round.json").unlink()  # unfinished: no round.json
    assert state.newest()[0] == state.next
    for folder in (state.next, state.previous):
        shutil.rmtree(folder)
    with pytest.raises(WorldError, match="no memories this version can resume from"):
        state.newest()


def test_a_world_on_few_cores_runs_its_rounds_in_this_process(tmp_path, monkeypatch, capsys):
    """Below RAY_WORLD_MIN_CORES a world's parallel round runs here (on Ray it measured slower on 2 cores), said once."""
    import sys

    from world_inputs import room_photo_and_two_walk_plan

    import worldstereo.cli.world as world_cli

    monkeypatch.setattr(world_cli, "available_cores", lambda: 2)
    image, plan = room_photo_and_two_walk_plan(tmp_path, W, H, frames=2, angle=10)
    assert main(["world", "--image", str(image), "--plan", str(plan), "--size", f"{W}x{H}", "--fill",
                 "telea", "--depth-backend", "prior", "--no-mesh", "--out", str(tmp_path / "w")]) == 0
    assert "the rounds run in this process: 2 cores" in capsys.readouterr().err
    assert "ray" not in sys.modules or not sys.modules["ray"].is_initialized()
