"""File formats: official camera.json (both kinds), example folders, nerfstudio camera paths, point clouds."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import trimesh
from PIL import Image

from worldstereo.camera import CameraParameters
from worldstereo.formats import (
    CameraFileInfo,
    NerfstudioPath,
    read_camera_json,
    read_example_folder,
    read_nerfstudio_path,
    read_point_cloud,
    write_camera_json,
    write_nerfstudio_path,
    write_point_cloud,
)


def _all_camera_files(examples_dir):
    files = sorted(examples_dir.rglob("camera.json"))
    assert len(files) == 10
    return files


# ------------------------------------------------------------------------------------------------ camera.json
def test_every_official_camera_json_loads_and_round_trips(examples_dir, tmp_path):
    for f in _all_camera_files(examples_dir):
        raw = json.loads(f.read_text())
        cams, info = read_camera_json(f)
        assert cams.dtype == torch.float64
        np.testing.assert_array_equal(cams.extrinsics.numpy(), np.array(raw["extrinsic"]))
        np.testing.assert_array_equal(cams.intrinsics.numpy(), np.array(raw["intrinsic"]))
        if "motion_list" in raw:
            assert info.kind == "images" and len(cams) == 81 and info.motion_list == raw["motion_list"]
            assert info.size_source == "image"
            with Image.open(f.parent / "image.png") as im:
                assert (cams.width, cams.height) == im.size
        else:
            assert info.kind == "renders" and len(cams) == 21 and info.size_source == "file"
            assert (cams.width, cams.height) == (raw["width"], raw["height"])
        out = tmp_path / f.parent.name / "camera.json"
        write_camera_json(out, cams, info)
        assert json.loads(out.read_text()) == raw  # same numbers, same keys (exact: floats written with repr)
        assert list(json.loads(out.read_text())) == list(raw)
        cams2, info2 = read_camera_json(out)
        assert torch.equal(cams2.extrinsics, cams.extrinsics) and info2.kind == info.kind


def test_extra_keys_survive_and_size_guess_without_image(tmp_path, examples_dir):
    src = examples_dir / "images" / "photorealistic-indoor-dining_spaces-030" / "camera.json"
    raw = json.loads(src.read_text())
    raw["type"] = "custom"
    raw["id"] = 7
    f = tmp_path / "camera.json"  # no image.png beside it
    f.write_text(json.dumps(raw))
    cams, info = read_camera_json(f)
    assert info.size_source == "principal_point" and (cams.width, cams.height) == (1080, 720)
    assert info.extra == {"type": "custom", "id": 7}
    write_camera_json(tmp_path / "out.json", cams, info)
    assert json.loads((tmp_path / "out.json").read_text()) == raw


def test_write_new_renders_kind(tmp_path):
    cams = CameraParameters.from_fov(0.9, 40, 30, extrinsics=torch.eye(4).repeat(3, 1, 1))
    write_camera_json(tmp_path / "c.json", cams)
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["width"] == 40 and data["height"] == 30 and len(data["extrinsic"]) == 3
    back, info = read_camera_json(tmp_path / "c.json")
    assert info.kind == "renders"
    torch.testing.assert_close(back.intrinsics.float(), cams.intrinsics)
    write_camera_json(tmp_path / "i.json", cams, CameraFileInfo(kind="images", motion_list=["right-1.5"]))
    data = json.loads((tmp_path / "i.json").read_text())
    assert list(data) == ["motion_list", "extrinsic", "intrinsic"] and data["motion_list"] == ["right-1.5"]
    back, info = read_camera_json(tmp_path / "i.json")
    assert info.kind == "images" and info.size_source == "principal_point" and (back.width, back.height) == (40, 30)
    with pytest.raises(ValueError, match="kind"):
        CameraFileInfo(kind="video")


def _valid():
    return {"extrinsic": [np.eye(4).tolist()] * 2, "intrinsic": [[[50.0, 0, 20], [0, 50.0, 15], [0, 0, 1]]] * 2,
            "width": 40, "height": 30}


def _bad_cases():
    rot = _valid()
    rot["extrinsic"][1] = np.diag([1.0, 2.0, 1.0, 1.0]).tolist()
    nan = _valid()
    nan["intrinsic"][0][0][0] = float("nan")
    count = _valid()
    count["intrinsic"] = count["intrinsic"][:1]
    shape = _valid()
    shape["extrinsic"] = [np.eye(3).tolist()] * 2
    missing = _valid()
    del missing["intrinsic"]
    size = _valid()
    size["width"] = -3
    half = _valid()
    del half["height"]
    motion = _valid()
    motion["motion_list"] = "left-1"
    return [
        (rot, "extrinsic"), (nan, "intrinsic"), (count, "intrinsic"), (shape, "extrinsic"),
        (missing, "intrinsic"), (size, "width"), (half, "height"), (motion, "motion_list"),
    ]


@pytest.mark.parametrize("case", range(8))
def test_camera_json_validation_names_file_and_field(tmp_path, case):
    data, fld = _bad_cases()[case]
    f = tmp_path / "camera.json"
    f.write_text(json.dumps(data))  # json.dumps writes NaN as a bare NaN literal, which json.loads accepts
    with pytest.raises(ValueError, match=fld) as err:
        read_camera_json(f)
    assert str(f) in str(err.value)


def test_broken_json_and_wrong_top_level(tmp_path):
    f = tmp_path / "camera.json"
    f.write_text('{"extrinsic": [')
    with pytest.raises(ValueError, match="broken JSON") as err:
        read_camera_json(f)
    assert str(f) in str(err.value)
    f.write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        read_camera_json(f)


# ------------------------------------------------------------------------------------------------ example folders
def test_read_reconstruction_folder_in_reference_order(examples_dir):
    ex = read_example_folder(examples_dir / "reconstruction" / "bicycle")
    assert [p.name for p in ex.paths] == ["eloop", "up", "right", "left"]
    assert ex.image.dtype == np.uint8 and ex.image.shape == (512, 768, 3)
    assert "prompt" in ex.prompt
    for p in ex.paths:
        assert len(p.cameras) == 21 and (p.cameras.width, p.cameras.height) == (768, 512)
        np.testing.assert_allclose(p.cameras.extrinsics[0].numpy(), np.eye(4))  # camera 0 at the origin
    t = ex.image_tensor()
    assert t.shape == (1, 3, 512, 768) and t.dtype == torch.float32 and float(t.max()) <= 1.0


def test_read_images_folder(examples_dir):
    ex = read_example_folder(examples_dir / "images" / "photorealistic-outdoor-verdant_landscape-050")
    assert [p.name for p in ex.paths] == ["camera"]
    assert ex.path("camera").info.motion_list[0].startswith("rotation_left_up")
    assert (ex.path("camera").cameras.width, ex.path("camera").cameras.height) == (ex.image.shape[1], ex.image.shape[0])
    with pytest.raises(ValueError, match="eloop"):
        ex.path("eloop")


def test_example_folder_errors(tmp_path):
    with pytest.raises(ValueError, match="image.png"):
        read_example_folder(tmp_path)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "image.png")
    with pytest.raises(ValueError, match="camera.json"):
        read_example_folder(tmp_path)


# ------------------------------------------------------------------------------------------------ nerfstudio
def test_nerfstudio_round_trip_and_axes(examples_dir, tmp_path):
    cams, _ = read_camera_json(examples_dir / "reconstruction" / "Caterpillar" / "renders" / "traj_left" / "camera.json")
    ns = NerfstudioPath(cams, keyframes=cams[::5], fps=16.0, is_cycle=False, smoothness=0.5)
    f = tmp_path / "camera_path.json"
    write_nerfstudio_path(f, ns)
    data = json.loads(f.read_text())
    assert data["camera_type"] == "perspective" and data["render_width"] == 904 and data["render_height"] == 512
    assert data["seconds"] == pytest.approx(21 / 16) and len(data["keyframes"]) == 5
    # hand check of frame 5: row-major c2w in OpenGL axes = OpenCV c2w with the y and z columns negated
    m = np.array(data["camera_path"][5]["camera_to_world"]).reshape(4, 4)
    cv = cams.c2w[5].numpy()
    np.testing.assert_allclose(m[:, 0], cv[:, 0], atol=1e-12)
    np.testing.assert_allclose(m[:3, 1:3], -cv[:3, 1:3], atol=1e-12)
    np.testing.assert_allclose(m[:3, 3], cams.camera_centers[5].numpy(), atol=1e-12)
    fov = 2 * math.degrees(math.atan(256 / 530.7259521484375))
    assert data["camera_path"][0]["fov"] == pytest.approx(fov, abs=1e-9)
    back = read_nerfstudio_path(f)
    np.testing.assert_allclose(back.cameras.extrinsics.numpy(), cams.extrinsics.numpy(), atol=1e-5)
    np.testing.assert_allclose(back.cameras.intrinsics.numpy(), cams.intrinsics.numpy(), atol=1e-5)
    np.testing.assert_allclose(back.keyframes.extrinsics.numpy(), cams[::5].extrinsics.numpy(), atol=1e-5)
    assert back.fps == 16.0 and back.smoothness == 0.5


def test_nerfstudio_legacy_column_major_keyframes(tmp_path):
    cams = CameraParameters.look_at([1.0, -0.5, -2.0], [0.0, 0.0, 0.0], width=40, height=30).to(dtype=torch.float64)
    f = tmp_path / "p.json"
    write_nerfstudio_path(f, NerfstudioPath(cams, keyframes=cams))
    data = json.loads(f.read_text())
    data["keyframes"][0]["matrix"] = np.array(data["keyframes"][0]["matrix"]).reshape(4, 4).T.reshape(-1).tolist()
    f.write_text(json.dumps(data))
    back = read_nerfstudio_path(f)
    np.testing.assert_allclose(back.keyframes.extrinsics.numpy(), cams.extrinsics.numpy(), atol=1e-5)


def test_nerfstudio_validation(tmp_path):
    cams = CameraParameters.from_fov(0.9, 40, 30)
    f = tmp_path / "p.json"
    write_nerfstudio_path(f, NerfstudioPath(cams))
    data = json.loads(f.read_text())
    bad = dict(data, camera_path=[{"camera_to_world": [1.0] * 15, "fov": 50.0}])
    f.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match=r"camera_path\[0\]\.camera_to_world"):
        read_nerfstudio_path(f)
    bad = dict(data, camera_path=[{"camera_to_world": np.diag([1.0, 1, 3, 1]).ravel().tolist(), "fov": 50.0}])
    f.write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="not a rotation"):
        read_nerfstudio_path(f)
    f.write_text(json.dumps({k: v for k, v in data.items() if k != "render_width"}))
    with pytest.raises(ValueError, match="render_width"):
        read_nerfstudio_path(f)


# ------------------------------------------------------------------------------------------------ point clouds
@pytest.mark.parametrize("suffix", [".ply", ".glb"])
@pytest.mark.parametrize("uint8", [False, True])
def test_point_cloud_round_trip_through_trimesh(tmp_path, suffix, uint8):
    rng = np.random.default_rng(0)
    pts = rng.normal(size=(200, 3)).astype(np.float32)
    cols = rng.integers(0, 256, size=(200, 3), dtype=np.uint8)
    given = cols if uint8 else cols.astype(np.float32) / 255.0
    f = write_point_cloud(tmp_path / f"cloud{suffix}", torch.from_numpy(pts), given)
    loaded = trimesh.load(f)
    geom = next(iter(loaded.geometry.values())) if isinstance(loaded, trimesh.Scene) else loaded
    np.testing.assert_allclose(np.asarray(geom.vertices), pts, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(geom.colors)[:, :3], cols)
    back = read_point_cloud(f)
    np.testing.assert_array_equal(back.colors, cols)


def test_point_cloud_validation(tmp_path):
    with pytest.raises(ValueError, match="suffix|end in"):
        write_point_cloud(tmp_path / "c.xyz", np.zeros((3, 3)))
    with pytest.raises(ValueError, match="points"):
        write_point_cloud(tmp_path / "c.ply", np.zeros((3, 2)))
    with pytest.raises(ValueError, match="colors"):
        write_point_cloud(tmp_path / "c.ply", np.zeros((3, 3)), np.full((3, 3), 2.0))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ atomic writes
def test_failing_write_leaves_no_file(tmp_path, monkeypatch):
    import worldstereo.formats as formats

    cams = CameraParameters.from_fov(0.9, 40, 30)
    target = tmp_path / "camera.json"

    def boom(*_args, **_kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(formats.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_camera_json(target, cams)
    assert list(tmp_path.iterdir()) == []  # neither the final file nor the temporary one


def test_failing_write_keeps_the_old_file(tmp_path, monkeypatch):
    import trimesh as tm

    target = tmp_path / "cloud.glb"
    target.write_bytes(b"old")

    def boom(*_args, **_kwargs):
        raise RuntimeError("exporter failed")

    monkeypatch.setattr(tm.Scene, "export", boom)
    with pytest.raises(RuntimeError, match="exporter failed"):
        write_point_cloud(target, np.zeros((4, 3)))
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["cloud.glb"]
