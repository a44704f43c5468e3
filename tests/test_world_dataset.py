"""A world's dataset as a trainer reads it: every real view in it, walks as long as documented, no repeated pose,
no contradicting trajectories in one round, and guessed pixels masked (checked against ground truth)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from worldstereo.backends.depth_file import load_depth_map
from worldstereo.backends.fill import TeleaFill
from worldstereo.backends.warp import WarpGenerator
from worldstereo.cli import main
from worldstereo.config import WorldStereoConfig
from worldstereo.eval.dataset_consistency import dataset_consistency
from worldstereo.eval.visibility import visible_in
from worldstereo.examples import resolve_example
from worldstereo.exports import write_depth_png, write_image_png
from worldstereo.model import WorldStereo
from worldstereo.panorama.files import read_panorama_input
from worldstereo.panorama.synthetic import render_panorama
from worldstereo.scenes import get_scene
from worldstereo.world import Trajectory, WorldPlan, build_world, panorama_plan, photo_plan
from worldstereo.world.dataset import read_dataset
from worldstereo.world.export import same_pose


def _config(w: int, h: int) -> WorldStereoConfig:
    return WorldStereoConfig(width=w, height=h, generator="warp", fill="telea", depth_backend="prior")


def _scene_world(scene_name, plan, out, w=64, h=48, generator=None, split_rounds=True, log=None):
    view = get_scene(scene_name).start_view(w, h)

    def make_model(start: bool) -> WorldStereo:
        model = WorldStereo(_config(w, h), generator=generator)
        if start:
            model.start(view.image, view.depth, view.camera)
        return model

    return build_world(plan, out, {"input": scene_name}, make_model, progress=False, split_rounds=split_rounds, log=log)


def _sphere_median(rng: np.ndarray, max_latitude: float) -> float:
    """Median of an equirectangular range image over the sphere (rows weighted by their solid angle), within
    ``max_latitude`` degrees of the horizon."""
    h, w = rng.shape
    lat = 90.0 - (np.arange(h) + 0.5) / h * 180.0
    weight = np.repeat(np.cos(np.radians(lat)) * (np.abs(lat) <= max_latitude), w).reshape(h, w).ravel()
    order = np.argsort(rng.ravel())
    cum = np.cumsum(weight[order])
    return float(rng.ravel()[order][np.searchsorted(cum, 0.5 * cum[-1])])


def test_a_bank_world_holds_every_view_and_walks_one_median_distance(tmp_path):
    """A held-out kind of bank (a folder with depths, its room 2.7 times larger than unit scale): every start point
    lies in an exported view, and the farthest frame of a default walk lies one median distance from the centre."""
    pano = render_panorama("room", 512, antialias=1)
    rng = pano.range * 2.7
    write_image_png(tmp_path / "pano.png", pano.image)
    write_depth_png(tmp_path / "range.png", rng)
    assert main(["panorama", "split", str(tmp_path / "pano.png"), "--depth", str(tmp_path / "range.png"),
                 "--out", str(tmp_path / "bank")]) == 0
    _, bank = read_panorama_input(tmp_path / "bank")
    model = WorldStereo(_config(64, 48))
    model.start_views(bank.images, bank.cameras, bank.depths)
    points = model.ggm.point_cloud.clone()
    build_world(panorama_plan(1, 9), tmp_path / "w", {"input": "bank"}, lambda _start: model, progress=False)
    frames = read_dataset(tmp_path / "w" / "world")
    views = [f for f in frames if f.group == "view"]
    assert len(views) == 27 and {(f.camera.width, f.camera.height) for f in views} == {(832, 480)}
    inside = torch.zeros(points.shape[0], dtype=torch.bool)
    held = torch.zeros(points.shape[0], dtype=torch.bool)
    for f in views:
        cam = f.camera.to(dtype=torch.float32)
        uv, z = cam.project(points)
        inside |= (z[0] > 0) & (uv[0, :, 0] >= 0) & (uv[0, :, 0] < cam.width) & (uv[0, :, 1] >= 0) & (uv[0, :, 1] < cam.height)
        depth = torch.from_numpy(load_depth_map(f.depth_path)).view(1, 1, cam.height, cam.width)
        held |= visible_in(points, cam, depth, rel_tol=0.02)[0]
    assert bool(inside.all()), f"{int((~inside).sum())} of {inside.numel()} start points in no exported view"
    assert float(held.float().mean()) > 0.999  # ... and on its surface (seams, where views' points merged, aside)
    centres = torch.cat([f.camera.camera_centers for f in frames])
    farthest = float((centres - centres[0]).norm(dim=-1).max())
    assert farthest == pytest.approx(_sphere_median(rng, 71.6), rel=0.05)


def test_no_two_frames_share_a_pose(tmp_path):
    summary = _scene_world("room", photo_plan(frames=5), tmp_path / "w")
    frames = read_dataset(summary.dataset)
    c2w = [f.camera.c2w[0].double().numpy() for f in frames]
    for i in range(len(c2w)):
        for j in range(i):
            assert not same_pose(c2w[i], c2w[j], 1e-3), (frames[i].stem, frames[j].stem)
    meta = json.loads((tmp_path / "w" / "world.json").read_text())
    # every trajectory began at the input pose, and the eloop ends there: those frames were generated, not exported
    assert {(s["trajectory"], s["frame"]) for s in meta["skipped"]} >= {("eloop", 0), ("eloop", 4), ("up", 0)}
    assert all(s["same_as"] == "images/input_000.png" for s in meta["skipped"])


def test_a_round_whose_trajectories_overlap_is_split_and_a_users_plan_warned(tmp_path):
    a, b = Trajectory("a", "orbit_left", {"angle": 30.0}), Trajectory("b", "orbit_left", {"angle": 25.0})
    plan = WorldPlan(((a, b),), frames=6)
    notes: list[str] = []
    summary = _scene_world("tabletop", plan, tmp_path / "split", w=128, h=96, log=notes.append)
    assert [[t.name for t in r] for r in summary.plan.rounds] == [["a"], ["b"]]
    assert any(n.startswith("round 1 split into 2 rounds (a | b)") for n in notes)
    written = WorldPlan.load(tmp_path / "split" / "plan.json")
    assert [[t.name for t in r] for r in written.rounds] == [["a"], ["b"]]
    assert json.loads((tmp_path / "split" / "world.json").read_text())["plan"] == plan.to_json()  # as asked
    # the user asked for one round: it stays, with one warning
    notes.clear()
    kept = _scene_world("tabletop", plan, tmp_path / "kept", w=128, h=96, split_rounds=False, log=notes.append)
    assert [[t.name for t in r] for r in kept.plan.rounds] == [["a", "b"]]
    assert sum("warning: round 1 runs trajectories whose views overlap" in n for n in notes) == 1
    # split, b sees what a made instead of inventing the same place again: fewer generated points in the memory
    generated = {k: int((WorldStereo.load(tmp_path / k / "state" / "current").ggm.point_confidence < 0.5).sum())
                 for k in ("split", "kept")}
    assert generated["split"] < 0.8 * generated["kept"]
    # and the two trajectories agree with each other as well as a trajectory agrees with itself
    split = dataset_consistency(tmp_path / "split" / "world")
    assert split.across.floating_share <= 1.5 * split.within.floating_share + 0.002


class SpyFill(TeleaFill):
    """Telea that records every hole it was asked to fill."""

    def __init__(self):
        super().__init__()
        self.holes: list[torch.Tensor] = []

    def fill(self, image, hole):
        self.holes.append(hole.clone())
        return super().fill(image, hole)


def test_masks_are_zero_where_a_fallback_filled_and_kept_depth_is_true(tmp_path):
    w, h = 256, 192
    scene = get_scene("room")
    view = scene.start_view(w, h)
    spy = SpyFill()
    plan = WorldPlan(((Trajectory("left", "orbit_left", {"angle": 30.0}),),), frames=6)
    _scene_world("room", plan, tmp_path / "w", w, h, generator=WarpGenerator(filler=spy))
    frames = [f for f in read_dataset(tmp_path / "w" / "world") if f.group == "left"]
    assert len(frames) == 5 and len(spy.holes) >= 4  # frame 0 (the input pose) is not exported
    within = total = unseen0 = zeros = seen255 = ones = 0
    for f, hole in zip(frames, spy.holes[-5:], strict=True):
        mask = torch.from_numpy(np.asarray(Image.open(f.mask_path)) == 255)
        depth = torch.from_numpy(load_depth_map(f.depth_path))
        assert not bool((mask & hole[0]).any()), f.stem  # every pixel the fallback filled is 0
        assert not bool((depth[hole[0]] > 0).any()), f.stem  # and its guessed depth never reaches supervision
        truth = scene.render(f.camera).depth
        ok = torch.isfinite(truth[0, 0]) & (truth[0, 0] > 0)
        rel = (depth - truth[0, 0]).abs() / truth[0, 0]
        keep = mask & (depth > 0) & ok
        within += int((rel[keep] <= 0.02).sum())
        total += int(keep.sum())
        # against the truth: pixels at 0 show surface the start view never saw; pixels at 255 mostly surface it saw
        pts = f.camera.to(dtype=torch.float32).unproject(truth)[0]
        seen = torch.zeros(h, w, dtype=torch.bool)
        seen[ok] = visible_in(pts[ok], view.camera, view.depth, rel_tol=0.02)[0]
        unseen0 += int((~mask & ok & ~seen).sum())
        zeros += int((~mask & ok).sum())
        seen255 += int((mask & ok & seen).sum())
        ones += int((mask & ok).sum())
    assert zeros > 1000 and unseen0 >= 0.97 * zeros
    assert seen255 >= 0.9 * ones
    assert within >= 0.98 * total and total >= 0.8 * ones


def test_examples_by_name():
    assert resolve_example("bicycle").name == "bicycle"
    assert resolve_example("KITCHEN").name == "photorealistic-indoor-dining_spaces-030"
    with pytest.raises(ValueError, match="example's name .*Bicycle"):
        resolve_example("no-such-example")
