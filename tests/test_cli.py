"""The ``worldstereo`` command line: every official example runs through it; bad input gives one clear message."""

from __future__ import annotations

import json
import math
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
import torch
import trimesh

from worldstereo import trajectory
from worldstereo.backends.depth_file import load_depth_map
from worldstereo.camera import CameraParameters
from worldstereo.cli import main, parse_size, subsample
from worldstereo.formats import NerfstudioPath, read_camera_json, read_example_folder, write_nerfstudio_path
from worldstereo.model import WorldStereo

SIZE = "64x48"  # small working size: the tests check plumbing and files, not image quality
W, H = 64, 48


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def _video_len(path: Path) -> tuple[int, tuple[int, ...]]:
    reader = imageio.get_reader(str(path), format="FFMPEG")
    try:
        frames = [np.asarray(f) for f in reader]
    finally:
        reader.close()
    return len(frames), frames[0].shape


def _check_path_outputs(d: Path, want: CameraParameters) -> None:
    """video, frames, depth and cameras.json of one path match the wanted cameras (at the working size)."""
    n = len(want)
    assert _video_len(d / "video.mp4") == (n, (H, W, 3))
    assert sorted(p.name for p in (d / "frames").iterdir()) == [f"{i:03d}.png" for i in range(n)]
    assert sorted(p.name for p in (d / "depth").iterdir()) == [f"{i:03d}.png" for i in range(n)]
    assert load_depth_map(d / "depth" / "000.png").shape == (H, W)
    cams, info = read_camera_json(d / "cameras.json")
    assert info.kind == "renders" and (cams.width, cams.height) == (W, H)
    torch.testing.assert_close(cams.extrinsics, want.extrinsics.double(), atol=1e-5, rtol=0)
    torch.testing.assert_close(cams.intrinsics, want.resized(W, H).intrinsics.double(), atol=1e-3, rtol=1e-5)
    assert not [p for p in d.rglob(".*")], "temporary files left behind"


def _check_memory_outputs(out: Path) -> WorldStereo:
    model = WorldStereo.load(out / "snapshot")
    n = model.ggm.num_points
    assert n > 0
    cloud = trimesh.load(out / "pointcloud.ply")
    assert isinstance(cloud, trimesh.PointCloud) and len(cloud.vertices) == n
    glb = trimesh.load(out / "pointcloud.glb")
    assert sum(len(g.vertices) for g in glb.geometry.values()) == n
    return model


# ------------------------------------------------------------------------------------------------ examples
def _reconstruction_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "reconstruction").iterdir() if p.is_dir())


def _images_dirs(root: Path) -> list[Path]:
    return sorted(p for p in (root / "images").iterdir() if p.is_dir())


def test_every_reconstruction_example_runs_all_paths_with_one_memory(capsys, tmp_path, examples_dir):
    dirs = _reconstruction_dirs(examples_dir)
    assert len(dirs) >= 2
    for ex_dir in dirs:
        out = tmp_path / ex_dir.name
        rc, stdout, err = _run(capsys, "generate", "--example", ex_dir, "--size", SIZE, "--frames", "3", "--out", out)
        assert rc == 0, err
        assert "approximate" in err  # no MoGe weights here: the notice says the geometry is approximate
        ex = read_example_folder(ex_dir)
        assert [p.name for p in ex.paths] == ["eloop", "up", "right", "left"]
        for p in ex.paths:
            want = p.cameras[torch.tensor([0, 10, 20])]  # 3 of 21, evenly spaced, first and last kept
            _check_path_outputs(out / p.name, want)
        model = _check_memory_outputs(out)
        assert model.path_counter == 4 and model.frame_counter == 1 + 4 * 3  # one shared memory
        torch.testing.assert_close(model.start_camera.w2c, ex.paths[0].cameras.extrinsics[:1].float())
        run = json.loads((out / "run.json").read_text())
        assert run["approximate_geometry"] is True and [p["name"] for p in run["paths"]] == ["eloop", "up", "right", "left"]


def test_every_images_example_runs_with_its_camera_file(capsys, tmp_path, examples_dir):
    for ex_dir in _images_dirs(examples_dir):
        out = tmp_path / ex_dir.name
        rc, _, err = _run(capsys, "generate", "--image", ex_dir / "image.png", "--camera", ex_dir / "camera.json",
                          "--size", SIZE, "--frames", "3", "--out", out, "--quiet")
        assert rc == 0, err
        assert err == ""  # --quiet: no progress bar, no notice
        cams, info = read_camera_json(ex_dir / "camera.json")
        assert info.kind == "images" and len(cams) == 81
        _check_path_outputs(out, cams[torch.tensor([0, 40, 80])])
        model = _check_memory_outputs(out)
        # the file's first camera is the input image's camera (it is not the identity in these files)
        assert float((cams.extrinsics[0] - torch.eye(4, dtype=torch.float64)).abs().max()) > 1.0
        torch.testing.assert_close(model.start_camera.w2c[0], cams.extrinsics[0].float())


def test_camera_file_scale_is_applied_reported_and_warned(capsys, tmp_path, examples_dir):
    ex_dir = _images_dirs(examples_dir)[0]
    out = tmp_path / "o"
    rc, _, err = _run(capsys, "generate", "--image", ex_dir / "image.png", "--camera", ex_dir / "camera.json",
                      "--size", SIZE, "--frames", "21", "--out", out)
    assert rc == 0, err
    raw = json.loads((ex_dir / "camera.json").read_text())
    d0 = raw["extrinsic"][0][2][3]  # the orbit pivot's depth: frame 0 is [I | (0, 0, d0)]
    run = json.loads((out / "run.json").read_text())
    assert run["scale_factor"] != 1.0 and "lies at its depth" in run["scale_message"]
    assert f"depth scaled x{run['scale_factor']:.3g}" in err
    # the start view's depth at the image centre now sits at the pivot's depth (independent of the code: read back)
    d = load_depth_map(out / "depth" / "000.png")
    centre = d[H // 2 - 2 : H // 2 + 3, W // 2 - 2 : W // 2 + 3]
    assert float(np.median(centre)) == pytest.approx(d0, rel=0.05)
    # the coverage guard names the frames that look at unknown space (a 148-degree orbit)
    assert "look at space the memory does not know yet" in err and "frames " in err


def test_given_depth_is_only_scaled_when_asked(capsys, tmp_path, examples_dir):
    ex_dir = _images_dirs(examples_dir)[0]
    img = imageio.imread(ex_dir / "image.png")
    depth = np.full(img.shape[:2], 4.0, np.float32)
    np.save(tmp_path / "d.npy", depth)
    for flag, want in (([], 4.0), (["--align-scale"], json.loads((ex_dir / "camera.json").read_text())["extrinsic"][0][2][3])):
        out = tmp_path / f"o{len(flag)}"
        rc, _, err = _run(capsys, "generate", "--image", ex_dir / "image.png", "--depth", tmp_path / "d.npy",
                          "--camera", ex_dir / "camera.json", "--size", SIZE, "--frames", "2", "--out", out, *flag)
        assert rc == 0, err
        assert float(np.median(load_depth_map(out / "depth" / "000.png"))) == pytest.approx(want, rel=1e-3)


def test_images_kind_folder_as_example(capsys, tmp_path, examples_dir):
    ex_dir = _images_dirs(examples_dir)[0]
    rc, _, err = _run(capsys, "generate", "--example", ex_dir, "--size", SIZE, "--frames", "2", "--out", tmp_path / "o")
    assert rc == 0, err
    cams, _ = read_camera_json(ex_dir / "camera.json")
    _check_path_outputs(tmp_path / "o", cams[torch.tensor([0, 80])])


# ------------------------------------------------------------------------------------------------ scenes
def test_scenes_list_and_render_feed_generate(capsys, tmp_path):
    rc, out, _ = _run(capsys, "scenes")
    assert rc == 0
    names = [line.split()[0] for line in out.strip().splitlines()]
    assert names == ["room", "terrain", "tabletop"]
    rc, out2, _ = _run(capsys, "scenes", "list")
    assert rc == 0 and out2 == out

    sd = tmp_path / "room"
    rc, _, err = _run(capsys, "scenes", "render", "room", "--out", sd, "--size", SIZE)
    assert rc == 0, err
    depth = np.load(sd / "depth.npy")
    assert depth.shape == (H, W) and depth.dtype == np.float32 and (depth > 0).all()
    np.testing.assert_allclose(load_depth_map(sd / "depth.png"), depth, atol=0.0005 + 1e-6)
    cams, _ = read_camera_json(sd / "camera.json")
    torch.testing.assert_close(cams.extrinsics[0], torch.eye(4, dtype=torch.float64))

    out_dir = tmp_path / "gen"
    rc, _, err = _run(capsys, "generate", "--image", sd / "image.png", "--depth", sd / "depth.png",
                      "--preset", "orbit_left", "--preset-param", "angle=10", "--frames", "3",
                      "--size", SIZE, "--out", out_dir)
    assert rc == 0, err
    run = json.loads((out_dir / "run.json").read_text())
    assert run["depth_source"] == "given" and run["approximate_geometry"] is False
    assert "approximate" not in err
    cams_out, _ = read_camera_json(out_dir / "cameras.json")
    assert len(cams_out) == 3
    # orbit_left by 10 degrees: the last camera is yawed by 10 degrees from the first
    R = cams_out.extrinsics[-1, :3, :3] @ cams_out.extrinsics[0, :3, :3].T
    assert math.degrees(math.acos((float(torch.trace(R)) - 1) / 2)) == pytest.approx(10.0, abs=0.01)


def test_scene_input_with_oracle_and_a_camera_file_is_reanchored(capsys, tmp_path):
    # a camera file whose first pose is not the identity: the path is moved rigidly onto the scene's start camera
    start = CameraParameters.from_fov(math.radians(60), W, H).to(dtype=torch.float64)
    path = trajectory.preset("orbit_right", start, 3, scene_depth=2.0, angle=8.0)
    offset = torch.eye(4, dtype=torch.float64)
    offset[:3, 3] = torch.tensor([0.3, -0.2, 1.0])
    moved = CameraParameters(path.intrinsics, path.extrinsics @ offset, W, H)  # the world moved by a rigid transform
    write_nerfstudio_path(tmp_path / "camera_path.json", NerfstudioPath(moved))
    out = tmp_path / "o"
    rc, _, err = _run(capsys, "generate", "--scene", "room", "--generator", "oracle", "--camera",
                      tmp_path / "camera_path.json", "--size", SIZE, "--out", out)
    assert rc == 0, err
    cams, _ = read_camera_json(out / "cameras.json")
    assert len(cams) == 3
    torch.testing.assert_close(cams.extrinsics, path.extrinsics, atol=1e-5, rtol=0)
    # the oracle renders the scene's truth: frame 0 is the start view
    from PIL import Image

    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(W, H)
    frame0 = np.asarray(Image.open(out / "frames" / "000.png")).astype(float)
    truth = view.image[0].permute(1, 2, 0).numpy() * 255
    assert np.abs(frame0 - truth).mean() < 1.0


def test_interrupted_generate_leaves_no_partial_files(capsys, tmp_path, monkeypatch, bad_inputs):
    original = WorldStereo.generate

    def two_then_interrupt(self, path, num_frames=21):
        it = original(self, path, num_frames)
        for i, step in enumerate(it):
            if i == 2:
                it.close()
                raise KeyboardInterrupt
            yield step

    monkeypatch.setattr(WorldStereo, "generate", two_then_interrupt)
    out = tmp_path / "o"
    rc, _, err = _run(capsys, "generate", "--image", bad_inputs / "good.png", "--preset", "orbit_right",
                      "--frames", "5", "--size", SIZE, "--out", out)
    assert rc == 130 and "interrupted" in err and "Traceback" not in err
    assert sorted(p.name for p in (out / "frames").iterdir()) == ["000.png", "001.png"]
    for name in ("video.mp4", "cameras.json", "pointcloud.ply", "pointcloud.glb", "snapshot"):
        assert not (out / name).exists(), name
    run = json.loads((out / "run.json").read_text())  # says what happened: partial, and why
    assert run["complete"] is False and run["reason"] == "interrupted"
    assert not [p for p in out.rglob(".*")]


# ------------------------------------------------------------------------------------------------ bad input
def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no real pixel data)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    from PIL import Image

    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(d / "good.png")
    (d / "garbage.png").write_bytes(b"this is not an image")
    (d / "huge.png").write_bytes(_png_header(20000, 20000))  # Pillow's own bomb guard
    (d / "big.png").write_bytes(_png_header(6000, 6000))  # under Pillow's guard, over the library's 16 MP limit
    np.save(d / "depth_small.npy", np.ones((40, 50), np.float32))
    cam = {"extrinsic": [np.eye(4).tolist()], "intrinsic": [[[100.0, 0, 64], [0, 100.0, 48], [0, 0, 1]]],
           "width": 128, "height": 96}
    cam["extrinsic"][0][0][3] = float("nan")
    (d / "nan_camera.json").write_text(json.dumps(cam))  # json writes NaN as the bare literal NaN
    (d / "broken.json").write_text('{"extrinsic": [[[1, 0, 0, 0], ')
    (d / "other.json").write_text('{"hello": 1}')
    (d / "full").mkdir()
    (d / "full" / "something.txt").write_text("keep me")
    return d


BAD_CASES = {
    "unreadable image": (["--image", "{d}/garbage.png", "--preset", "orbit_left"], "not an image"),
    "missing image": (["--image", "{d}/nope.png", "--preset", "orbit_left"], "not found"),
    "huge image": (["--image", "{d}/huge.png", "--preset", "orbit_left"], "too large"),
    "huge image beyond our limit": (["--image", "{d}/big.png", "--preset", "orbit_left"], "6000x6000"),
    "nan camera": (["--image", "{d}/good.png", "--camera", "{d}/nan_camera.json"], "NaN"),
    "broken json": (["--image", "{d}/good.png", "--camera", "{d}/broken.json"], "broken JSON"),
    "not a camera file": (["--image", "{d}/good.png", "--camera", "{d}/other.json"], "not a camera file"),
    "depth wrong size": (["--image", "{d}/good.png", "--depth", "{d}/depth_small.npy", "--preset", "orbit_left"],
                         "50x40 but the image is 128x96"),
    "unknown preset": (["--image", "{d}/good.png", "--preset", "spiral"], "valid presets: "),
    "bad size": (["--image", "{d}/good.png", "--preset", "orbit_left", "--size", "100x100"], "multiple of 16"),
    "bad size text": (["--image", "{d}/good.png", "--preset", "orbit_left", "--size", "large"], "WIDTHxHEIGHT"),
    "no path": (["--image", "{d}/good.png"], "--camera FILE or --preset NAME"),
    "unknown scene": (["--scene", "castle", "--preset", "orbit_left"], "valid scenes: room"),
    "oracle without scene": (["--image", "{d}/good.png", "--preset", "orbit_left", "--generator", "oracle"], "--scene"),
    "bad preset param": (["--image", "{d}/good.png", "--preset", "orbit_left", "--preset-param", "radius=2"],
                         "has no parameter"),
    "output not empty": (["--image", "{d}/good.png", "--preset", "orbit_left", "--out", "{d}/full"], "--overwrite"),
}


@pytest.mark.parametrize("case", list(BAD_CASES))
def test_bad_input_gives_one_clear_message(capsys, tmp_path, bad_inputs, case):
    args, expected = BAD_CASES[case]
    argv = ["generate", *[a.format(d=bad_inputs) for a in args]]
    if "--size" not in args:
        argv += ["--size", SIZE]
    if "--out" not in args:
        argv += ["--out", str(tmp_path / "out")]
    rc, stdout, err = _run(capsys, *argv)
    assert rc == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "Traceback" not in err and stdout == ""
    if "--out" not in args:  # nothing was written
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*"))
    assert (bad_inputs / "full" / "something.txt").read_text() == "keep me"


def test_unknown_preset_lists_every_valid_preset(capsys, bad_inputs, tmp_path):
    _, _, err = _run(capsys, "generate", "--image", bad_inputs / "good.png", "--preset", "spiral", "--out", tmp_path / "o")
    for name in trajectory.list_presets():
        assert name in err


def test_debug_shows_the_traceback(capsys, bad_inputs, tmp_path):
    rc, _, err = _run(capsys, "--debug", "generate", "--image", bad_inputs / "garbage.png", "--preset", "eloop",
                      "--out", tmp_path / "o")
    assert rc == 2 and "Traceback" in err and "error: " in err


def test_size_parsing_and_subsampling():
    assert parse_size("512x384") == (512, 384) and parse_size("64X48") == (64, 48)
    cams = CameraParameters.from_fov(1.0, 64, 48, extrinsics=torch.eye(4).repeat(81, 1, 1))
    cams.extrinsics[:, 0, 3] = torch.arange(81.0)
    picked = subsample(cams, 5).extrinsics[:, 0, 3]
    assert picked.tolist() == [0.0, 20.0, 40.0, 60.0, 80.0]
    assert len(subsample(cams, None)) == 81 and len(subsample(cams, 500)) == 81
    assert subsample(cams, 1).extrinsics[:, 0, 3].tolist() == [0.0]


def test_console_script_entry_point(tmp_path, bad_inputs):
    exe = Path(sys.executable).parent / "worldstereo"
    assert exe.is_file(), "console script not installed (pip install -e .)"
    ok = subprocess.run([str(exe), "scenes"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and ok.stdout.split()[0] == "room"
    bad = subprocess.run([str(exe), "generate", "--image", str(bad_inputs / "garbage.png"), "--preset", "eloop",
                          "--out", str(tmp_path / "o")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "Traceback" not in bad.stderr


def test_camera_file_kinds_are_told_apart_by_keys(tmp_path):
    from worldstereo.cli import read_camera_file

    cams = CameraParameters.from_fov(math.radians(60), 64, 48).to(dtype=torch.float64)
    write_nerfstudio_path(tmp_path / "ns.json", NerfstudioPath(cams))
    same = read_camera_file(tmp_path / "ns.json", image_size=(64, 48))
    assert same.kind == "nerfstudio"
    torch.testing.assert_close(same.cameras.intrinsics.double(), cams.intrinsics)
    # another image aspect: the vertical fov is kept, pixels stay square, the principal point is the centre
    wide = read_camera_file(tmp_path / "ns.json", image_size=(128, 48)).cameras
    f = 0.5 * 48 / math.tan(math.radians(30))
    K = wide.intrinsics[0].double()
    assert (wide.width, wide.height) == (128, 48)
    assert float(K[0, 0]) == pytest.approx(f, rel=1e-5) and float(K[1, 1]) == pytest.approx(f, rel=1e-5)
    assert float(K[0, 2]) == pytest.approx(64.0) and float(K[1, 2]) == pytest.approx(24.0)


def test_eval_subcommand_is_wired(capsys, tmp_path):
    assert main(["eval", "--out", str(tmp_path / "ev"), "--size", "bad"]) == 2
    assert "--size" in capsys.readouterr().err
    assert main(["eval", "--help"]) == 0
    assert "--quick" in capsys.readouterr().out
