"""Camera-path editor state: pure editing functions and the one sampler (no browser)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ui import path_editor as pe
from worldstereo import trajectory
from worldstereo.camera import CameraParameters
from worldstereo.formats import NerfstudioPath, write_camera_json, write_nerfstudio_path


def pose(x: float, y: float = 0.0, z: float = 0.0, yaw_deg: float = 0.0) -> np.ndarray:
    a = math.radians(yaw_deg)
    T = np.eye(4)
    T[:3, :3] = [[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]]
    T[:3, 3] = [x, y, z]
    return T


def start_camera() -> CameraParameters:
    return CameraParameters.from_fov(math.radians(60), 64, 48)


def three_keys() -> pe.PathEditorState:
    s = pe.PathEditorState()
    for x in (0.0, 1.0, 2.0):
        s = pe.add_keyframe(s, pose(x), math.radians(50))
    return s


def test_add_keyframe_inserts_after_selection_and_switches_mode():
    s = three_keys()
    assert s.mode == "keyframes" and len(s.keyframes) == 3 and s.selected == 2
    s = pe.select_keyframe(s, 0)
    s2 = pe.add_keyframe(s, pose(0.5), math.radians(40))
    xs = [k.T_world_camera[0, 3] for k in s2.keyframes]
    assert xs == [0.0, 0.5, 1.0, 2.0] and s2.selected == 1
    assert len(s.keyframes) == 3  # the old state is untouched


def test_move_delete_reorder_fov():
    s = three_keys()
    s = pe.move_keyframe(s, 1, pose(1.0, 0.5))
    assert s.keyframes[1].T_world_camera[1, 3] == 0.5 and s.keyframes[1].fov_y == pytest.approx(math.radians(50))
    s = pe.set_keyframe_fov(s, 1, math.radians(70))
    assert s.keyframes[1].fov_y == pytest.approx(math.radians(70))
    s = pe.reorder_keyframe(s, 0, +2)
    assert [k.T_world_camera[0, 3] for k in s.keyframes] == [1.0, 2.0, 0.0] and s.selected == 2
    s = pe.reorder_keyframe(s, 2, +5)  # clamped
    assert s.selected == 2
    s = pe.delete_keyframe(s, 0)
    assert [k.T_world_camera[0, 3] for k in s.keyframes] == [2.0, 0.0] and s.selected == 0
    with pytest.raises(ValueError, match="keyframe index"):
        pe.delete_keyframe(s, 5)
    with pytest.raises(ValueError, match="fov_y"):
        pe.set_keyframe_fov(s, 0, math.nan)


def test_keyframe_path_is_trajectory_path_sample():
    s = three_keys()
    got = pe.path_cameras(s, start_camera(), 2.0, 9).cameras
    ref = trajectory.Path(list(s.keyframes)).sample(9, 64, 48)
    assert torch.equal(got.extrinsics, ref.extrinsics) and torch.equal(got.intrinsics, ref.intrinsics)
    # the path passes through the keyframes at samples 0, 4 and 8 (unit durations)
    centres = got.camera_centers.double().numpy()
    np.testing.assert_allclose(centres[[0, 4, 8], 0], [0.0, 1.0, 2.0], atol=1e-5)


def test_preset_path_is_trajectory_preset_and_amount_scales():
    cam = start_camera()
    s = pe.PathEditorState(preset="orbit_right", amount=1.0, guard=False)
    got = pe.path_cameras(s, cam, 2.0, 5).cameras
    ref = trajectory.preset("orbit_right", cam, 5, 2.0)
    assert torch.allclose(got.extrinsics, ref.extrinsics.float())
    half = pe.path_cameras(pe.set_preset(s, "orbit_right", 0.5), cam, 2.0, 5).cameras
    ref_half = trajectory.preset("orbit_right", cam, 5, 2.0, angle=90.0)
    assert torch.allclose(half.extrinsics, ref_half.extrinsics.float())
    # translations: amount scales the travelled distance
    fwd = pe.path_cameras(pe.set_preset(s, "forward", 0.5), cam, 2.0, 3).cameras
    full = trajectory.preset("forward", cam, 3, 2.0)
    d_half = float((fwd.camera_centers[-1] - fwd.camera_centers[0]).norm())
    d_full = float((full.camera_centers[-1] - full.camera_centers[0]).norm())
    assert d_half == pytest.approx(0.5 * d_full, rel=1e-5)


def test_guard_shortens_move_into_geometry():
    cam = start_camera()
    wall = np.stack(np.meshgrid(np.linspace(-2, 2, 30), np.linspace(-2, 2, 30), [0.6]), -1).reshape(-1, 3)
    s = pe.PathEditorState(preset="forward", amount=2.0, guard=True)  # 2 x 0.25 x depth 2 = 1.0 > wall at 0.6
    res = pe.path_cameras(s, cam, 2.0, 5, points=torch.from_numpy(wall).float())
    assert float(res.cameras.camera_centers[-1, 2]) < 0.6 and "shortened" in res.message


def test_keyframe_path_needs_two_keys():
    s = pe.add_keyframe(pe.PathEditorState(), pose(0), 1.0)
    with pytest.raises(ValueError, match="at least two keyframes"):
        pe.path_cameras(s, start_camera(), 1.0, 5)


def test_keyframes_from_cameras_subsamples_keeping_ends():
    cams = trajectory.preset("orbit_left", start_camera(), 21, 2.0)
    s = pe.keyframes_from_cameras(pe.PathEditorState(), cams, max_keys=5)
    assert len(s.keyframes) == 5
    np.testing.assert_allclose(s.keyframes[0].T_world_camera, cams.c2w[0].double().numpy(), atol=1e-9)
    np.testing.assert_allclose(s.keyframes[-1].T_world_camera, cams.c2w[20].double().numpy(), atol=1e-6)


def test_read_path_file_both_kinds_and_errors(tmp_path):
    cams = trajectory.preset("orbit_left", start_camera(), 4, 2.0).to(dtype=torch.float64)
    write_camera_json(tmp_path / "camera.json", cams)
    got = pe.read_path_file(tmp_path / "camera.json")
    assert torch.allclose(got.extrinsics, cams.extrinsics)
    write_nerfstudio_path(tmp_path / "camera_path.json", NerfstudioPath(cams))
    ns = pe.read_path_file(tmp_path / "camera_path.json")
    assert torch.allclose(ns.extrinsics, cams.extrinsics, atol=1e-6)
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken JSON"):
        pe.read_path_file(tmp_path / "broken.json")
    (tmp_path / "other.json").write_text(json.dumps({"a": 1}))
    with pytest.raises(ValueError, match="neither"):
        pe.read_path_file(tmp_path / "other.json")
    bad = json.loads((tmp_path / "camera.json").read_text())
    bad["extrinsic"][1][0][3] = float("nan")
    (tmp_path / "nan.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError):
        pe.read_path_file(tmp_path / "nan.json")


def test_state_validation():
    with pytest.raises(ValueError, match="unknown preset"):
        pe.PathEditorState(preset="spiral")
    with pytest.raises(ValueError, match="amount"):
        pe.PathEditorState(amount=0.0)
