"""Run exports: frames, 16-bit depth, video, cameras.json, point cloud, snapshot; atomic under interruption."""

from __future__ import annotations

import math
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
from PIL import Image

from worldstereo import trajectory
from worldstereo.backends.depth_file import load_depth_map
from worldstereo.camera import CameraParameters
from worldstereo.exports import (
    RunWriter,
    depth_to_png16,
    save_snapshot,
    write_depth_png,
    write_image_png,
    write_memory,
)
from worldstereo.formats import read_camera_json, read_point_cloud
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.pipeline import MemoryStats, Step
from worldstereo.scenes import get_scene

W, H = 64, 48


def _step(i: int, n: int, seed: int = 0) -> Step:
    """A Step with known random content (image, depth in [0.5, 5]) and a camera moved i * 0.1 along x."""
    g = torch.Generator().manual_seed(seed * 1000 + i)
    image = torch.rand(3, H, W, generator=g)
    depth = 0.5 + 4.5 * torch.rand(1, H, W, generator=g)
    E = torch.eye(4)
    E[0, 3] = -0.1 * i
    cam = CameraParameters.from_fov(math.radians(60), W, H, extrinsics=E.unsqueeze(0))
    stats = MemoryStats(0, 0, 0, 0, 0.0, 0, 0, 0, 0)
    hole = torch.zeros(1, H, W, dtype=torch.bool)
    return Step(0, i, n, i + 1, image, depth, cam, image, hole, hole, False, [], None, stats)


def _video_frames(path: Path) -> list[np.ndarray]:
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        return [np.asarray(f) for f in reader]
    finally:
        reader.close()


def _hidden(d: Path) -> list[Path]:
    return [p for p in d.rglob(".*")]


def test_depth_png16_counts_are_millimetres_and_out_of_range_is_unknown():
    d = np.array([[0.0, 1.25, 0.0005], [65.535, 70.0, np.nan]])
    np.testing.assert_array_equal(depth_to_png16(d), np.array([[0, 1250, 0], [65535, 0, 0]], dtype=np.uint16))
    with pytest.raises(ValueError, match="depth must be"):
        depth_to_png16(np.zeros((2, 2, 2)))


def test_depth_png_reads_back_with_the_file_depth_backend(tmp_path):
    rng = np.random.default_rng(0)
    depth = rng.uniform(0.3, 20.0, size=(H, W)).astype(np.float32)
    depth[0, :5] = 0.0
    write_depth_png(tmp_path / "d.png", depth)
    with Image.open(tmp_path / "d.png") as im:
        assert im.mode.startswith("I;16") and im.size == (W, H)
    back = load_depth_map(tmp_path / "d.png")
    assert back.shape == (H, W)
    np.testing.assert_allclose(back, depth, atol=0.0005 + 1e-6)  # half a millimetre
    assert (back[0, :5] == 0).all()


def test_write_image_png_rejects_float_images(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        write_image_png(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    assert not any(tmp_path.iterdir())


def test_run_writer_writes_every_output_consistently(tmp_path):
    steps = [_step(i, 4) for i in range(4)]
    with RunWriter(tmp_path / "run", fps=5) as writer:
        for s in steps:
            writer.add(s)
    out = writer.outputs
    d = tmp_path / "run"
    assert out.video == d / "video.mp4" and out.cameras == d / "cameras.json"
    assert [p.name for p in out.frames] == ["000.png", "001.png", "002.png", "003.png"]
    for s, f, dp in zip(steps, out.frames, out.depths, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(f)), s.image_uint8())
        np.testing.assert_allclose(load_depth_map(dp), s.depth[0].numpy(), atol=0.0005 + 1e-6)
    frames = _video_frames(out.video)
    assert len(frames) == 4 and frames[0].shape == (H, W, 3)
    for s, f in zip(steps, frames, strict=True):  # lossy H.264 of noise: close on average, right frame order
        err = np.abs(f.astype(float) - s.image_uint8().astype(float)).mean()
        other = np.abs(f.astype(float) - steps[(s.frame_index + 1) % 4].image_uint8().astype(float)).mean()
        assert err < other
    cams, info = read_camera_json(out.cameras)
    assert info.kind == "renders" and (cams.width, cams.height) == (W, H)
    want = CameraParameters.cat([s.camera for s in steps])
    torch.testing.assert_close(cams.extrinsics.float(), want.extrinsics)
    torch.testing.assert_close(cams.intrinsics.float(), want.intrinsics)
    assert _hidden(d) == []


def test_interrupted_run_leaves_only_complete_files(tmp_path):
    d = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt), RunWriter(d) as writer:
        for i in range(5):
            if i == 2:
                raise KeyboardInterrupt
            writer.add(_step(i, 5))
    assert not (d / "video.mp4").exists() and not (d / "cameras.json").exists()
    assert _hidden(d) == []  # the temporary video is gone
    assert sorted(p.name for p in (d / "frames").iterdir()) == ["000.png", "001.png"]
    for i, f in enumerate(sorted((d / "frames").iterdir())):
        np.testing.assert_array_equal(np.asarray(Image.open(f)), _step(i, 5).image_uint8())


def test_a_new_run_clears_the_outputs_of_an_earlier_one(tmp_path):
    d = tmp_path / "run"
    with RunWriter(d) as w:
        for i in range(4):
            w.add(_step(i, 4))
    with RunWriter(d) as w:
        for i in range(2):
            w.add(_step(i, 2, seed=1))
    assert sorted(p.name for p in (d / "frames").iterdir()) == ["000.png", "001.png"]
    assert len(_video_frames(d / "video.mp4")) == 2
    assert len(read_camera_json(d / "cameras.json")[0]) == 2
    # interrupted second run: the first run's video and cameras do not survive beside the new frames
    with pytest.raises(KeyboardInterrupt), RunWriter(d) as w:
        w.add(_step(0, 3, seed=2))
        raise KeyboardInterrupt
    assert not (d / "video.mp4").exists() and not (d / "cameras.json").exists()
    assert [p.name for p in (d / "frames").iterdir()] == ["000.png"]


def test_run_writer_rejects_a_size_change_and_bad_fps(tmp_path):
    with pytest.raises(ValueError, match="fps"):
        RunWriter(tmp_path / "a", fps=0)
    s0 = _step(0, 2)
    s1 = _step(1, 2)
    s1.image = torch.rand(3, H // 2, W // 2)
    with pytest.raises(ValueError, match="differs"), RunWriter(tmp_path / "b") as w:
        w.add(s0)
        w.add(s1)
    assert not (tmp_path / "b" / "video.mp4").exists() and _hidden(tmp_path / "b") == []


@pytest.fixture(scope="module")
def small_model():
    scene = get_scene("room")
    view = scene.start_view(W, H)
    model = WorldStereo(WorldStereoConfig(width=W, height=H))
    model.start(view.image, view.depth, view.camera)
    cams = trajectory.preset("orbit_right", model.start_camera, 3, scene_depth=model.scene_depth, angle=10.0)
    for _ in model.generate(cams):
        pass
    return model


def test_write_memory_point_cloud_and_snapshot(tmp_path, small_model):
    mem = write_memory(tmp_path, small_model)
    n = small_model.ggm.num_points
    assert mem.num_points == n > 0
    for path in (mem.ply, mem.glb):
        pc = read_point_cloud(path)
        assert pc.points.shape == (n, 3)
        np.testing.assert_allclose(pc.points, small_model.ggm.point_cloud.numpy(), atol=1e-5)
        want = np.round(small_model.ggm.point_colors.clamp(0, 1).numpy() * 255).astype(np.uint8)
        np.testing.assert_array_equal(pc.colors, want)
    loaded = WorldStereo.load(mem.snapshot)
    torch.testing.assert_close(loaded.ggm.point_cloud, small_model.ggm.point_cloud)
    assert loaded.frame_counter == small_model.frame_counter
    assert _hidden(tmp_path) == []


def test_snapshot_replaced_only_when_the_new_one_is_complete(tmp_path, small_model, monkeypatch):
    snap = save_snapshot(small_model, tmp_path / "snapshot")
    before = {p.name: p.read_bytes() for p in snap.iterdir()}

    def failing_save(directory):
        (Path(directory) / "state.safetensors").write_bytes(b"partial")
        raise KeyboardInterrupt

    other = small_model.copy()
    monkeypatch.setattr(other, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        save_snapshot(other, tmp_path / "snapshot")
    assert {p.name: p.read_bytes() for p in snap.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot"]
    # a successful save replaces it
    monkeypatch.undo()
    other.frame_counter += 5
    save_snapshot(other, tmp_path / "snapshot")
    assert WorldStereo.load(tmp_path / "snapshot").frame_counter == small_model.frame_counter + 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["snapshot"]
