"""Explorer sessions without a browser: preview == generation, cancel/undo/continue, downloads, isolation."""

from __future__ import annotations

import json
import math
import zipfile
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch

from ui import path_editor as pe
from ui.attention_view import PixelAttention, bank_weights, error_map
from ui.config import AppConfig
from ui.lod import view_subset
from ui.samples import InputBundle
from ui.sessions import SessionLimitError, SessionManager
from worldstereo.formats import read_camera_json, read_point_cloud
from worldstereo.model import WorldStereo


def bundle() -> InputBundle:
    rng = np.random.default_rng(0)
    h, w = 192, 256
    img = (rng.random((h // 8, w // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
    depth = np.full((h, w), 2.0, np.float32) + np.linspace(0, 0.5, h, dtype=np.float32)[:, None]
    return InputBundle("synthetic", img, depth)


@pytest.fixture
def manager(tmp_path):
    m = SessionManager(AppConfig(temp_root=tmp_path / "sessions", max_sessions=2, max_view_points=5000))
    yield m
    m.shutdown()


def cams_equal(a, b) -> bool:
    return torch.equal(a.extrinsics.float(), b.extrinsics.float()) and torch.equal(a.intrinsics.float(), b.intrinsics.float())


def test_previewed_path_is_the_generated_path(manager):
    s = manager.get("a")
    s.load(bundle(), "256x192")
    s.set_path("preset", "orbit_right", 0.1, True, 3)
    previewed = s.viewport.previewed
    steps = [u for u in s.generate(3) if not u.done]
    generated = torch.cat([u.frame.camera.extrinsics for u in steps])
    assert len(steps) == 3 and torch.equal(generated.float(), previewed.extrinsics.float())
    # keyframe mode: add two keyframes from poses and compare again
    base = s.model.start_camera.c2w[0].double().numpy()
    moved = base.copy()
    moved[0, 3] += 0.1
    s.editor = pe.add_keyframe(pe.add_keyframe(pe.PathEditorState(), base, math.radians(60)), moved, math.radians(60))
    s.set_path("keyframes", "orbit_right", 0.1, True, 2)
    previewed = s.viewport.previewed
    steps = [u for u in s.generate(2) if not u.done]
    assert torch.equal(torch.cat([u.frame.camera.extrinsics for u in steps]).float(), previewed.extrinsics.float())
    assert cams_equal(previewed, trajectory_sample(s.editor, 2))


def trajectory_sample(editor, n):
    from worldstereo import trajectory

    return trajectory.Path(list(editor.keyframes)).sample(n, 256, 192)


def test_cancel_keeps_memories_consistent_then_continue_and_undo(manager):
    s = manager.get("a")
    s.load(bundle(), "256x192")
    s.set_path("preset", "orbit_right", 0.1, False, 5)
    updates = []
    for u in s.generate(5):
        updates.append(u)
        if len(updates) == 2:
            s.cancel()
    final = updates[-1]
    assert final.done and final.cancelled and len(s.frames) == 2
    assert s.model.ggm.num_points == final.history[-1].stats.points_total
    assert len(s.model.paths) == 1 and s.model.frame_counter == 3
    after_first = s.model.ggm.num_points
    # another path continues with the same memories (path index 1, frame ids go on)
    ups = list(s.generate(2))
    assert ups[0].frame.path_index == 1 and ups[0].frame.frame_id == 3 and ups[-1].done and not ups[-1].cancelled
    assert s.model.ggm.num_points >= after_first
    msg = s.undo()
    assert "Undone path 2" in msg and s.model.ggm.num_points == after_first and len(s.model.paths) == 1
    assert sorted(s.records) == [1, 2] and [h.frame_id for h in s.history] == [1, 2]


def test_downloads_are_valid_files(manager):
    s = manager.get("a")
    s.load(bundle(), "256x192")
    s.set_path("preset", "pan_right", 0.2, False, 3)
    list(s.generate(3))
    out = s.export()
    assert all(p.parent == s.directory / "downloads" for p in (out.video, out.ply, out.glb, out.snapshot))
    cloud = read_point_cloud(out.ply)
    assert cloud.points.shape == (s.model.ggm.num_points, 3)
    np.testing.assert_allclose(cloud.points, s.model.ggm.point_cloud.numpy(), atol=1e-5)
    assert len(read_point_cloud(out.glb).points) == s.model.ggm.num_points
    cams, _ = read_camera_json(out.cameras)
    assert torch.allclose(cams.extrinsics.float(), s.model.paths[0].extrinsics, atol=1e-6)
    frames = imageio.mimread(out.video)
    assert len(frames) == 3 and frames[0].shape[:2] == (192, 256)
    with zipfile.ZipFile(out.snapshot) as zf:
        zf.extractall(s.directory / "unzipped")
    restored = WorldStereo.load(s.directory / "unzipped" / "snapshot")
    assert restored.ggm.num_points == s.model.ggm.num_points and restored.frame_counter == s.model.frame_counter
    # another session continues from the uploaded snapshot: same memories, and it can generate on
    b = manager.get("b")
    summary = b.load_snapshot(out.snapshot)
    assert "memory snapshot" in summary.message and b.model.ggm.num_points == s.model.ggm.num_points
    assert torch.equal(b.model.ggm.point_cloud, s.model.ggm.point_cloud) and len(b.model.paths) == 1
    assert not (b.directory / "snapshot-upload").exists()  # the unpacked copy is gone
    b.set_path("preset", "pan_left", 0.2, False, 2)
    assert len(list(b.generate(2))) >= 2 and b.model.ggm.num_points >= s.model.ggm.num_points
    evil = b.directory / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zf:
        zf.writestr("../../escape.txt", "x")
    with pytest.raises(ValueError, match="outside the snapshot"):
        b.load_snapshot(evil)
    assert b.model.ggm.num_points >= s.model.ggm.num_points  # the session keeps its exploration


def test_user_messages_never_show_server_paths():
    from ui.page import user_message

    msg = user_message(ValueError("/tmp/gradio/3f2a/upload/camera.json: field 'extrinsic' holds 2 poses"))
    assert msg == "camera.json: field 'extrinsic' holds 2 poses"
    assert user_message(ValueError("a 12/3 ratio")) == "a 12/3 ratio"


def test_sessions_are_isolated_bounded_and_freed(manager):
    a, b = manager.get("a"), manager.get("b")
    assert manager.get("a") is a
    with pytest.raises(SessionLimitError, match="full"):
        manager.get("c")
    a.load(bundle(), "256x192")
    b.load(bundle(), "256x192")
    assert a.model is not b.model and a.directory != b.directory and a.token != b.token
    assert a.viewer_port != b.viewer_port
    assert manager.port_for_token(a.token) == a.viewer_port and manager.port_for_token("nope") is None
    before_b = b.model.ggm.num_points
    a.set_path("preset", "orbit_right", 0.1, False, 2)
    list(a.generate(2))
    assert b.model.ggm.num_points == before_b and not b.records and len(a.records) == 2
    assert all(r.file.parent.parent == a.directory for r in a.records.values())
    a_dir, a_token = a.directory, a.token
    assert manager.close("a") and not a_dir.exists() and manager.port_for_token(a_token) is None
    # the reaper frees idle sessions
    assert manager.reap(now=b.last_seen + manager.config.session_idle_timeout_s + 1) == ["b"]
    assert len(manager) == 0


def test_bad_input_messages(manager, tmp_path):
    s = manager.get("a")
    with pytest.raises(ValueError, match="load a sample"):
        s.current_path()
    with pytest.raises(ValueError, match="oracle"):
        s.load(bundle(), "256x192", generator="oracle")
    with pytest.raises(ValueError, match="size"):
        s.load(bundle(), "100x100")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):  # vace asked for on a CPU: refused, clearly
        s.load(bundle(), "256x192", generator="vace")
    summary = s.load(bundle(), "256x192")
    assert "Generator: warp" in summary.message  # auto on a CPU, and the status says so
    with pytest.raises(ValueError, match="frames"):
        s.set_path("preset", "orbit_right", 0.1, False, 500)


def test_view_subset_bounds_and_is_deterministic():
    pts = torch.randn(1000, 3)
    cols = torch.rand(1000, 3)
    a = view_subset(pts, cols, 100)
    b = view_subset(pts, cols, 100)
    assert a.points.shape == (100, 3) and a.points.dtype == np.float32 and a.colors.dtype == np.uint8
    assert a.total == 1000 and a.subsampled and np.array_equal(a.points, b.points)
    # every shown point is a memory point, with its own colour
    idx = [int(np.argmin(np.abs(pts.numpy() - p).sum(1))) for p in a.points[:10]]
    np.testing.assert_allclose(pts.numpy()[idx], a.points[:10])
    np.testing.assert_array_equal(np.rint(cols.numpy()[idx] * 255).astype(np.uint8), a.colors[:10])
    full = view_subset(pts[:50], cols[:50], 100)
    assert len(full.points) == 50 and not full.subsampled


def test_bank_weights_places_entries_by_box():
    att = PixelAttention(0, np.zeros(3), np.array([5, 7, 5, -1]), np.array([0.5, 0.3, 0.2, 0.0]),
                         np.array([[16, 0, 32, 16], [0, 16, 16, 32], [0, 0, 16, 16], [0, 0, 0, 0]]), np.zeros((4, 3)))
    w = bank_weights(att, [5, 7, 9], grid=(2, 3), patch_size=16)
    expect = np.zeros((3, 6))
    expect[0, 1], expect[0, 0], expect[1, 3] = 0.5, 0.2, 0.3
    np.testing.assert_allclose(w, expect)


def test_error_map_psnr():
    a = np.zeros((4, 4, 3), np.uint8)
    b = np.full((4, 4, 3), 51, np.uint8)  # error 0.2 everywhere: PSNR = -10 log10(0.04) = 13.98 dB
    vis, psnr = error_map(a, b)
    assert vis.shape == (4, 4, 3) and psnr == pytest.approx(13.9794, abs=1e-3)
    assert error_map(a, a)[1] == float("inf")


def test_config_from_env(monkeypatch):
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    monkeypatch.setenv("GRADIO_SERVER_PORT", "7999")
    monkeypatch.setenv("WORLDSTEREO_MAX_SESSIONS", "3")
    cfg = AppConfig.from_args([])
    assert (cfg.host, cfg.port, cfg.max_sessions) == ("0.0.0.0", 7999, 3)
    assert AppConfig.from_args(["--port", "8001", "--host", "127.0.0.1"]).port == 8001
    monkeypatch.delenv("GRADIO_SERVER_NAME")
    assert AppConfig.from_args([]).host == "127.0.0.1"
    monkeypatch.setenv("SPACE_ID", "user/space")
    assert AppConfig.from_args([]).host == "0.0.0.0"
    monkeypatch.setenv("GRADIO_SERVER_PORT", "abc")
    with pytest.raises(ValueError, match="GRADIO_SERVER_PORT"):
        AppConfig.from_args([])


def test_viewport_editor_callbacks_edit_the_path(manager):
    s = manager.get("a")
    s.load(bundle(), "256x192")
    cb = s._editor_callbacks()
    base = s.model.start_camera.c2w[0].double().numpy()
    for dx in (0.0, 0.2, 0.4):
        T = base.copy()
        T[0, 3] += dx
        cb.add_from_view(T, math.radians(55))
    assert s.editor.mode == "keyframes" and len(s.editor.keyframes) == 3 and s.editor.selected == 2
    cb.reorder_selected(-2)
    assert [round(k.T_world_camera[0, 3] - base[0, 3], 6) for k in s.editor.keyframes] == [0.4, 0.0, 0.2]
    cb.set_fov_selected(math.radians(40))
    assert s.editor.keyframes[0].fov_y == pytest.approx(math.radians(40))
    moved = base.copy()
    moved[1, 3] += 0.3
    cb.move(1, moved)
    assert s.editor.keyframes[1].T_world_camera[1, 3] == pytest.approx(base[1, 3] + 0.3)
    cb.delete_selected()
    assert len(s.editor.keyframes) == 2
    # the viewport shows exactly the editor's sampled path
    assert cams_equal(s.viewport.previewed, trajectory_sample(s.editor, s.num_frames))


def test_preview_is_coloured_by_coverage_and_updates_on_drag(manager):
    s = manager.get("a")
    summary = s.load(bundle(), "256x192")
    assert "Depth: *given*" in summary.message
    s.set_path("preset", "orbit_right", 0.1, True, 5)
    labels = s.viewport.previewed_coverage
    assert labels is not None and len(labels) == 5 and labels[0] == "known"
    # a keyframe dragged to look away from the scene turns its end of the path unknown
    base = s.model.start_camera.c2w[0].double().numpy()
    away = base.copy()
    away[:3, :3] = base[:3, :3] @ np.diag([-1.0, 1.0, -1.0])  # turned around
    s.editor = pe.add_keyframe(pe.add_keyframe(pe.PathEditorState(), base, math.radians(60)), base, math.radians(60))
    msg = s.set_path("keyframes", "orbit_right", 0.1, True, 5)
    assert s.viewport.previewed_coverage == ["known"] * 5 and "Coverage" not in msg
    s._on_move(1, away)
    assert s.viewport.previewed_coverage[-1] == "unknown" and s.viewport.previewed_coverage[0] == "known"


def test_example_load_reports_depth_and_scale(manager, examples_dir):
    from ui.samples import EXAMPLE_PREFIX, list_samples, load_sample

    name = next(n for n in list_samples() if n.startswith(EXAMPLE_PREFIX) and "dining" in n)
    s = manager.get("b")
    summary = s.load(load_sample(name, 256, 192), "256x192")
    assert "approximate" in summary.message and "switched off (HF_HUB_OFFLINE)" in summary.message
    assert "Scaled x" in summary.message
    assert s.model.start_info.scale_factor != 1.0


def test_cancel_or_failure_in_the_middle_of_a_frame_leaves_the_last_whole_frame(manager):
    s = manager.get("a")
    s.load(bundle(), "256x192")
    s.set_path("preset", "orbit_right", 0.1, False, 6)
    gen = s.model.generator
    real = gen.generate_frame
    calls = []

    def cancel_mid_frame(model, camera, index):
        calls.append(index)
        if index == 2:
            s.cancel()  # the click arrives while frame 2 is being generated
        return real(model, camera, index)

    gen.generate_frame = cancel_mid_frame
    updates = list(s.generate(6))
    assert updates[-1].cancelled and calls == [0, 1, 2] and len(s.frames) == 3
    last = updates[-2].frame  # frame 2 finished whole and is in the memories; nothing of frame 3 is
    assert s.model.ggm.num_points == s.history[-1].stats.points_total and s.model.frame_counter == last.frame_id + 1
    state = (s.model.ggm.num_points, int(s.model.ssm.occupied_mask.sum()), len(s.model.keyframes), s.model.frame_counter)

    def fail_mid_frame(model, camera, index):
        if index == 1:
            raise RuntimeError("generator crashed mid-frame")
        return real(model, camera, index)

    gen.generate_frame = fail_mid_frame
    s.set_path("preset", "orbit_left", 0.1, False, 3)
    with pytest.raises(RuntimeError, match="mid-frame"):
        list(s.generate(3))
    # only frame 0 of the failed path was whole: the memories hold it and nothing of frame 1
    assert s.model.frame_counter == state[3] + 1 and s.model.ggm.num_points >= state[0]
    assert s.model.ggm.num_points == s.history[-1].stats.points_total
    gen.generate_frame = real
    assert len(list(s.generate(2))) >= 2  # the session goes on


def test_panorama_sample_loads_as_a_panorama_seen_from_inside(manager, tmp_path):
    from ui.samples import PANORAMA_PREFIX, list_samples, load_sample, load_upload, sample_caption
    from worldstereo.exports import write_image_png

    names = list_samples()
    assert PANORAMA_PREFIX + "room" in names and sample_caption(PANORAMA_PREFIX + "room") == "Room 360*"
    s = manager.get("a")
    summary = s.load(load_sample(PANORAMA_PREFIX + "room", 256, 192), "256x192", "auto", "warp", fill="telea")
    assert "as a **panorama** (29 views)" in summary.message and "exact at any depth" in summary.message
    assert s.engine.depth == "panorama (29 views), given depth" and summary.has_truth
    assert s.editor.preset == "look_around"
    start = s.model.start_camera.camera_centers[0].numpy()
    cam = s.viewport.server.initial_camera
    # the viewer stands inside the cloud, just behind the centre, looking the way the path starts
    assert np.linalg.norm(np.asarray(cam.position) - start) < 0.5 * s.model.scene_depth
    look = np.asarray(cam.look_at) - np.asarray(cam.position)
    assert float(look @ s.model.start_camera.c2w[0, :3, 2].numpy()) > 0.9 * np.linalg.norm(look)
    s.set_path("preset", "look_around", 1.0, False, 3)
    ups = [u for u in s.generate(3) if not u.done]
    assert len(ups) == 3 and all(u.frame.frame_id >= 29 for u in ups)
    truth, _, psnr = s.truth_of(ups[1].frame.frame_id)  # ground truth of a frame of the panorama's scene
    assert truth.shape == ups[1].frame.image.shape and psnr > 20
    # a 2:1 upload is taken as a panorama, unless asked to be a photo
    pano = np.tile(np.linspace(0, 255, 128, dtype=np.uint8)[None, :, None], (64, 1, 3))
    write_image_png(tmp_path / "p.png", pano)
    assert load_upload(tmp_path / "p.png").kind == "panorama"
    assert load_upload(tmp_path / "p.png", as_photo=True).kind == "image"
    summary = s.load(load_upload(tmp_path / "p.png"), "256x192", "prior", "warp", fill="telea")
    assert "panorama" in summary.message and s.engine.depth == "panorama (29 views), room prior (approximate)"


def test_build_world_runs_the_default_plan_and_offers_the_dataset_zip(manager):
    s = manager.get("a")
    s.load(bundle(), "256x192")
    before = s.model.ggm.num_points
    updates = list(s.build_world(3))
    lines = [u[0] for u in updates if u[1] is None]
    final, files = updates[-1]
    # 1 + 4 x 3 frames generated; each trajectory's first and the eloop's last repeat the input pose: not exported
    assert "trajectory 1 / 4 (eloop), frame 1 / 3" in lines[0] and "World built: 4 trajectories, 8 frames" in final
    with zipfile.ZipFile(files[0]) as zf:
        names = set(zf.namelist())
        data = json.loads(zf.read("world/transforms.json"))
    assert {"world/transforms.json", "world/pointcloud.ply", "world/images/input_000.png", "world/depths/left_002.png",
            "world/masks/left_002.png"} <= names
    assert len(data["frames"]) == 8 and s.model.ggm.num_points >= before and s.model.frame_counter == 13
    # Prepare downloads afterwards: the world's zip stays in the list, beside the prepared files
    s.export()
    names = [Path(f).name for f in s.downloads()]
    assert names[-2:] == ["memory_snapshot.zip", "world_dataset.zip"] and "pointcloud.ply" in names


def test_a_panorama_is_named_as_in_the_gallery_and_shown_without_frames_in_front(manager):
    from ui.samples import PANORAMA_PREFIX, display_name, load_sample, sample_caption

    s = manager.get("a")
    summary = s.load(load_sample(PANORAMA_PREFIX + "room", 256, 192), "256x192")
    assert display_name(summary.label) == sample_caption(PANORAMA_PREFIX + "room") == "Room 360*"
    assert "Loaded **Room 360***" in summary.message and "panorama: room" not in summary.message
    # from its centre, frames would sit right in front of the viewer: the switch starts off
    assert not s.viewport.frames_visible
    assert all(not h.visible for h in s.viewport._frustums.values())
    # the cloud is drawn with points as large as their spacing, so that it reads as surfaces from inside
    from ui.viewport import POINT_SPACING_FACTOR, point_spacing

    cloud = s.model.ggm.point_cloud[:: max(1, s.model.ggm.num_points // 300_000)].numpy()
    assert s.viewport.point_size >= 0.8 * POINT_SPACING_FACTOR * point_spacing(cloud)
    # a photo's frames are on again
    s.load(bundle(), "256x192")
    assert s.viewport.frames_visible
