"""WorldStereo model + inference API on procedural scenes with ground truth."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.pipeline import Step
from worldstereo.scenes import get_scene

W, H = 512, 384


@pytest.fixture(scope="module")
def room():
    """The room at 512x384: the size the quality figures are stated for."""
    scene = get_scene("room")
    return scene, scene.start_view(W, H)


@pytest.fixture(scope="module")
def small_room():
    """The room at 256x192, for behaviour that does not depend on image quality (faster)."""
    scene = get_scene("room")
    return scene, scene.start_view(256, 192)


def _small_model(view, **kw) -> WorldStereo:
    model = WorldStereo(WorldStereoConfig(width=256, height=192, **kw))
    model.start(view.image, view.depth, view.camera)
    return model


def _psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor | None = None) -> float:
    err = ((a - b) ** 2).mean(0)
    if mask is not None:
        err = err[mask]
    return float(10 * torch.log10(1.0 / err.mean().clamp(min=1e-12)))


def _visible_from(camera: CameraParameters, depth: torch.Tensor, target: CameraParameters, target_depth: torch.Tensor) -> torch.Tensor:
    """(H, W) bool: pixels of the target whose true surface point the camera sees (true depths, 1.5% test)."""
    pts = target.unproject(target_depth)[0].reshape(-1, 3)
    uv, z = camera.project(pts)
    u, v, z = uv[0, :, 0], uv[0, :, 1], z[0]
    inside = (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height) & (z > 0)
    ui = u.clamp(0, camera.width - 1).long()
    vi = v.clamp(0, camera.height - 1).long()
    d_cam = depth[0, 0, vi, ui]
    ok = inside & (d_cam > 0) & ((z - d_cam).abs() <= 0.015 * z)
    return (ok & (target_depth[0, 0].reshape(-1) > 0)).reshape(target.height, target.width)


def _orbit(model: WorldStereo, n: int, angle: float = 30.0, name: str = "orbit_left") -> CameraParameters:
    return trajectory.preset(name, model.start_camera, n, scene_depth=model.scene_depth, angle=angle)


def _eloop(model: WorldStereo, n: int) -> CameraParameters:
    return trajectory.preset("eloop", model.start_camera, n, scene_depth=model.scene_depth, rx=0.1, ry=0.1)


def test_warp_matches_oracle_where_the_start_view_saw_the_scene(room):
    scene, view = room
    model = WorldStereo(WorldStereoConfig(width=W, height=H))
    info = model.start(view.image, view.depth, view.camera)
    assert not info.approximate and info.depth_source == "given"
    cams = trajectory.preset("orbit_right", model.start_camera, 5, scene_depth=model.scene_depth, angle=12.0)
    psnrs = []
    for step in model.generate(cams):
        truth = scene.render(step.camera, antialias=2)
        seen = _visible_from(view.camera, view.depth, step.camera, truth.depth)
        assert seen.float().mean() > 0.5
        psnrs.append(_psnr(step.image, truth.image[0], seen))
    assert min(psnrs[1:]) >= 25.0, psnrs


def test_eloop_returns_to_the_start_view(room):
    scene, view = room
    model = WorldStereo(WorldStereoConfig(width=W, height=H))
    model.start(view.image, view.depth, view.camera)
    steps = list(model.generate(_eloop(model, 9)))
    torch.testing.assert_close(steps[-1].camera.w2c, view.camera.w2c, atol=1e-4, rtol=0)
    assert _psnr(steps[-1].image, view.image[0]) >= 30.0
    # the memory is what makes it so: the memory-less baseline drifts
    baseline = WorldStereo(WorldStereoConfig(width=W, height=H, use_ggm=False, use_ssm=False))
    baseline.start(view.image, view.depth, view.camera)
    last = list(baseline.generate(_eloop(baseline, 9)))[-1]
    assert _psnr(last.image, view.image[0]) < _psnr(steps[-1].image, view.image[0]) - 3.0


def test_ggm_grows_on_new_surface_and_merges_on_revisit(room):
    scene, view = room
    model = WorldStereo(WorldStereoConfig(width=W, height=H))
    model.start(view.image, view.depth, view.camera)
    n0 = model.ggm.num_points
    first = list(model.generate(_orbit(model, 4)))
    grown = model.ggm.num_points - n0
    assert grown > 1000  # the orbit reveals surface the start view did not see
    assert sum(s.memory.points_added for s in first) == grown
    # the same path again: the region is revisited, so points merge instead of being added
    n1 = model.ggm.num_points
    second = list(model.generate(_orbit(model, 4)))
    added = sum(s.memory.points_added for s in second)
    merged = sum(s.memory.points_merged for s in second)
    assert added < 0.05 * grown
    assert merged > 10 * max(added, 1)
    assert model.ggm.num_points - n1 == added
    assert second[-1].memory.points_total == model.ggm.num_points


def test_step_records(small_room):
    scene, view = small_room
    model = _small_model(view)
    steps = list(model.generate("orbit_right", 5))
    assert [s.frame_index for s in steps] == list(range(5))
    assert [s.frame_id for s in steps] == list(range(1, 6))
    s: Step = steps[2]
    assert s.image.shape == (3, 192, 256) and s.depth.shape == (1, 192, 256) and s.ggm_render.shape == (3, 192, 256)
    assert s.ggm_hole_mask.dtype == torch.bool and s.new_surface_mask.shape == (1, 192, 256)
    assert bool((s.depth > 0).all())
    assert 0 in s.references  # the input image is a reference view
    att = s.attention
    assert att is not None and att.grid == (192 // 16, 256 // 16)
    n = att.grid[0] * att.grid[1]
    assert att.top_entries.shape[0] == n and att.top_weights.shape == att.top_entries.shape
    assert att.top_boxes.shape[:2] == att.top_entries.shape and att.top_boxes.shape[-1] == 4
    ok = att.top_entries >= 0
    assert bool(ok.any())
    # attended entries belong to the reported frames, and weights are a (sub-)distribution
    assert torch.equal(model.ssm.entry_frames[att.top_entries[ok]], att.top_frames[ok])
    assert bool((att.top_weights.sum(1) <= 1 + 1e-4).all())
    # pixels came from attended views; what was attended is stored keyframes (the path's own among them)
    assert set(s.references) <= set(att.frame_weights) <= {k.frame_id for k in model.keyframes}
    assert {"render", "ssm", "inpaint", "update", "total"} <= set(s.timings)
    assert steps[-1].memory.points_total == model.ggm.num_points
    img8 = s.image_uint8()
    assert img8.dtype == np.uint8 and img8.shape == (192, 256, 3)
    keys = [x.frame_index for x in steps if x.is_keyframe]
    assert keys[0] == 0 and keys[-1] == 4


def test_multi_path_undo_restores_both_memories_exactly(small_room):
    scene, view = small_room
    model = _small_model(view)
    n_start = model.ggm.num_points
    list(model.generate("orbit_right", 4))
    pts, bank, kfs = model.ggm.point_cloud.clone(), model.ssm.memory_bank.clone(), [k.frame_id for k in model.keyframes]
    second = list(model.generate("orbit_left", 4))
    assert second[0].frame_id == 5 and second[0].path_index == 1
    assert model.ggm.num_points != pts.shape[0]
    assert model.undo()
    assert torch.equal(model.ggm.point_cloud, pts)
    assert torch.equal(model.ssm.memory_bank, bank)
    assert [k.frame_id for k in model.keyframes] == kfs
    again = list(model.generate("orbit_left", 4))
    assert again[0].frame_id == 5
    assert torch.equal(again[-1].image, second[-1].image)  # deterministic: same memories -> same frames
    assert model.undo() and model.undo() and not model.undo()
    assert model.ggm.num_points == n_start and model.frame_counter == 1 and len(model.keyframes) == 1


def test_save_load_round_trip_is_exact(small_room, tmp_path):
    scene, view = small_room
    model = _small_model(view, update_strategy="lru")
    list(model.generate("orbit_right", 4))
    model.save(tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == ["state.json", "state.safetensors"]
    loaded = WorldStereo.load(tmp_path / "snap")
    assert loaded.config == model.config
    for a, b in [(model.ggm.state_dict(), loaded.ggm.state_dict()), (model.ssm.state_dict(), loaded.ssm.state_dict())]:
        assert a.keys() == b.keys()
        for k in a:
            if isinstance(a[k], torch.Tensor):
                torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, equal_nan=True, msg=k)
    assert [k.frame_id for k in loaded.keyframes] == [k.frame_id for k in model.keyframes]
    # both continue identically
    s1 = list(model.generate("orbit_left", 3))
    s2 = list(loaded.generate("orbit_left", 3))
    for x, y in zip(s1, s2, strict=True):
        assert x.frame_id == y.frame_id
        assert torch.equal(x.image, y.image)
    assert torch.equal(model.ggm.point_cloud, loaded.ggm.point_cloud)


def test_load_rejects_broken_snapshots(tmp_path):
    with pytest.raises(ValueError, match="state.json"):
        WorldStereo.load(tmp_path)
    (tmp_path / "state.json").write_text("{not json")
    (tmp_path / "state.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="broken JSON"):
        WorldStereo.load(tmp_path)


@pytest.mark.parametrize("frequency", ["per_frame", "per_step", "manual"])
def test_update_frequency_is_honoured(small_room, frequency):
    scene, view = small_room
    model = _small_model(view, update_frequency=frequency)
    n0, occ0 = model.ggm.num_points, model.ssm.occupancy
    gen = model.generate("orbit_left", 4)
    totals = [s.memory.points_total for s in gen]
    if frequency == "per_frame":
        assert totals[-1] > totals[0] >= n0 and model.ssm.occupancy > occ0
    elif frequency == "per_step":
        assert totals == [n0] * 4  # nothing during the path...
        assert model.ggm.num_points > n0 and model.ssm.occupancy > occ0  # ...all of it at its end
    else:
        assert totals == [n0] * 4 and model.ggm.num_points == n0 and model.ssm.occupancy == occ0


def test_per_step_commits_frames_of_a_cancelled_path(small_room):
    scene, view = small_room
    model = _small_model(view, update_frequency="per_step")
    n0 = model.ggm.num_points
    gen = model.generate("orbit_left", 6)
    next(gen)
    next(gen)
    gen.close()  # the caller cancels
    assert model.ggm.num_points > n0
    assert len(model.keyframes) == 3  # the input image and both generated frames (6-frame path: all are keyframes)


def test_memory_switches_for_ablation(small_room):
    scene, view = small_room
    for use_ggm, use_ssm in [(False, False), (True, False), (False, True)]:
        model = _small_model(view, use_ggm=use_ggm, use_ssm=use_ssm)
        n0 = model.ggm.num_points
        steps = list(model.generate("orbit_left", 3))
        assert (model.ggm.num_points > n0) == use_ggm
        assert all((s.attention is not None) == use_ssm for s in steps[1:])
        if not use_ssm:
            assert model.ssm.occupancy == 0.0


def test_oracle_generator_renders_the_truth(small_room):
    scene, view = small_room
    model = _small_model(view, generator="oracle", scene="room")
    steps = list(model.generate("orbit_right", 3))
    truth = scene.render(steps[-1].camera, antialias=2)
    assert torch.equal(steps[-1].image, truth.image[0])
    assert torch.equal(steps[-1].depth, truth.depth[0])


def test_start_validates_inputs(small_room):
    scene, view = small_room
    model = WorldStereo(WorldStereoConfig(width=256, height=192))
    with pytest.raises(ValueError, match="depth size"):
        model.start(view.image, view.depth[..., :-1], view.camera)
    bad = view.depth.clone()
    bad[0, 0, 3, 3] = float("nan")
    with pytest.raises(ValueError, match="depth"):
        model.start(view.image, bad, view.camera)
    with pytest.raises(ValueError, match="image"):
        model.start(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="negative"):
        model.start(view.image, -view.depth, view.camera)
    with pytest.raises(RuntimeError, match="start"):
        list(model.generate("orbit_left", 2))
    model.start(view.image, view.depth, view.camera)
    with pytest.raises(ValueError, match="preset"):
        list(model.generate("spiral", 2))
    with pytest.raises(ValueError, match="num_frames"):
        list(model.generate("orbit_left", 0))


def test_start_without_depth_uses_the_prior_and_says_so(small_room):
    scene, view = small_room
    model = WorldStereo(WorldStereoConfig(width=256, height=192, depth_backend="prior"))
    img8 = (view.image[0].permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    info = model.start(img8)
    assert info.approximate and "approximate" in info.message
    assert model.start_camera.width == 256
    torch.testing.assert_close(model.start_camera.fov_y, torch.tensor([math.radians(60.0)]))
    steps = list(model.generate("orbit_right", 2))
    assert steps[-1].image.shape == (3, 192, 256)


def test_config_validation():
    with pytest.raises(ValueError, match="update_frequency"):
        WorldStereoConfig(update_frequency="sometimes")
    with pytest.raises(ValueError, match="multiple"):
        WorldStereoConfig(width=500)
    with pytest.raises(ValueError, match="update_strategy"):
        WorldStereo(WorldStereoConfig(update_strategy="random"))
    with pytest.raises(ValueError, match="generator must be one of"):
        WorldStereo(WorldStereoConfig(generator="diffusion"))
    with pytest.raises(ValueError, match="scene"):
        WorldStereo(WorldStereoConfig(generator="oracle"))


def test_a_view_of_nothing_known_is_filled_and_marked_not_flat(small_room):
    _, view = small_room
    model = _small_model(view)
    start = model.start_camera
    # the same camera turned around: every stored point is behind it
    turn = torch.diag(torch.tensor([-1.0, 1.0, -1.0, 1.0]))
    away = CameraParameters(start.K, turn @ start.w2c, start.width, start.height)
    steps = list(model.generate(CameraParameters.cat([start, away]), num_frames=2))
    assert not steps[0].blank and steps[0].hole_share < 0.05
    blank = steps[1]
    assert blank.blank and blank.hole_share == 1.0
    assert float(blank.image.std()) > 0.02  # never a flat colour
    assert bool((blank.depth > 0).all())  # still geometry: the next frames see it
    assert blank.memory.points_added > 0


def test_blank_frame_with_points_in_a_wider_view_shows_their_colours(small_room):
    _, view = small_room
    model = _small_model(view, use_ssm=False)
    start = model.start_camera
    # turned 90 degrees about the vertical axis: the start view's points are just outside the field of view
    a = math.radians(90.0)
    R = torch.tensor([[math.cos(a), 0.0, -math.sin(a), 0.0], [0.0, 1.0, 0.0, 0.0],
                      [math.sin(a), 0.0, math.cos(a), 0.0], [0.0, 0.0, 0.0, 1.0]])
    side = CameraParameters(start.K, R @ start.w2c, start.width, start.height)
    step = next(iter(model.generate(side, num_frames=1)))
    assert step.hole_share == 1.0
    # the fill takes colours the room has (not grey): compare the mean with the start image's
    assert float(step.image.std()) > 0.02
    assert float((step.image.mean((1, 2)) - view.image[0].mean((1, 2))).abs().max()) < 0.25
    assert float((step.image - view.image[0]).abs().mean()) > 0.02  # the wide render, not the held previous frame


def test_warp_frames_show_no_patch_grid_beyond_the_oracle(room):
    from worldstereo.eval.metrics import blockiness

    scene, view = room
    model = WorldStereo(WorldStereoConfig(width=W, height=H, fill="telea"))
    model.start(view.image, view.depth, view.camera)
    cams = _orbit(model, 9, angle=40.0)
    ours = [blockiness(s.image) for s in model.generate(cams, len(cams))]
    truth = [blockiness(im) for im in scene.render(cams).image]
    assert max(ours) <= max(truth) + 0.1, (ours, truth)


def test_filled_surface_enters_the_ggm_as_generated_points(small_room):
    from worldstereo.model import OBSERVED_CONFIDENCE

    _, view = small_room
    model = _small_model(view, fill="telea")
    n0 = model.ggm.num_points
    steps = list(model.generate(_orbit(model, 4), num_frames=4))
    conf = model.ggm.point_confidence
    assert bool((conf[:n0] == 1.0).all())  # the input view: observed
    added = conf[n0:]
    assert added.numel() == sum(s.memory.points_added for s in steps) > 0
    assert bool((added < OBSERVED_CONFIDENCE).all())  # inpainted surface: generated


def test_a_first_path_attends_to_its_own_earlier_keyframes():
    """warp retrieves again as keyframes are stored: after its third keyframe, every frame of the first path of an
    orbit spreads its attention over at least two keyframes (not only the input view)."""
    view = get_scene("room").start_view(128, 96)
    model = WorldStereo(WorldStereoConfig(width=128, height=96, generator="warp", fill="telea"))
    model.start(view.image, view.depth, view.camera)
    steps = list(model.generate("orbit_right", num_frames=13))
    third = [s.frame_index for s in steps if s.is_keyframe][2]
    later = [s for s in steps if s.frame_index > third]
    assert later
    for s in later:
        attended = {fid for fid, w in s.attention.frame_weights.items() if float(w.sum()) > 0}
        assert len(attended) >= 2, (s.frame_index, attended)
        assert attended - {0}, s.frame_index  # a keyframe of this path among them
