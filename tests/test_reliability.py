"""Bounds checked before any work, and runs that are whole or clearly partial (disk full, kill -9)."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from worldstereo.cli import main
from worldstereo.limits import MAX_CAMERA_POSES, MAX_PATH_FRAMES

ROOT = Path(__file__).resolve().parents[1]


def _camera_file(path: Path, n: int) -> Path:
    E = np.tile(np.eye(4), (n, 1, 1))
    E[:, 2, 3] = np.linspace(0, 1, n)
    K = np.tile(np.array([[200.0, 0, 64], [0, 200.0, 48], [0, 0, 1]]), (n, 1, 1))
    path.write_text(json.dumps({"extrinsic": E.tolist(), "intrinsic": K.tolist(), "width": 128, "height": 96}))
    return path


def _whole_png(path: Path) -> bool:
    try:
        with Image.open(path) as im:
            im.load()
        return True
    except OSError:
        return False


def test_frames_beyond_the_bound_fail_at_once_with_the_reason(tmp_path, capsys, monkeypatch):
    import worldstereo.scenes as scenes_mod

    rendered = []
    real_get_scene = scenes_mod.get_scene
    monkeypatch.setattr(scenes_mod, "get_scene", lambda *a, **k: rendered.append(1) or real_get_scene(*a, **k))
    rc = main(["generate", "--scene", "room", "--preset", "orbit_right", "--frames", "100000", "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert rc == 2 and f"at most {MAX_PATH_FRAMES} frames per path" in err and "several paths" in err
    assert not rendered and not (tmp_path / "a").exists()  # before any work (not even the scene's view), nothing written
    monkeypatch.setattr(scenes_mod, "get_scene", real_get_scene)
    # a camera file with more poses than a path may have: refused unless subsampled
    cams = _camera_file(tmp_path / "long.json", MAX_PATH_FRAMES + 1)
    img = tmp_path / "img.png"
    Image.fromarray(np.full((96, 128, 3), 128, np.uint8)).save(img)
    rc = main(["generate", "--image", str(img), "--camera", str(cams), "--out", str(tmp_path / "b"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--frames N to subsample" in err and not (tmp_path / "b").exists()
    # a camera file beyond the per-file limit is refused while reading
    huge = _camera_file(tmp_path / "huge.json", MAX_CAMERA_POSES + 1)
    rc = main(["generate", "--image", str(img), "--camera", str(huge), "--frames", "3", "--out", str(tmp_path / "c")])
    assert rc == 2 and f"limit of {MAX_CAMERA_POSES}" in capsys.readouterr().err
    # the library refuses too, before generating anything
    from worldstereo.model import WorldStereo, WorldStereoConfig
    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, fill="telea"))
    model.start(view.image, view.depth, view.camera)
    before = (model.frame_counter, model.ggm.num_points, len(model.paths))
    with pytest.raises(ValueError, match="frames per path"):
        model.generate("orbit_right", MAX_PATH_FRAMES + 1)
    assert (model.frame_counter, model.ggm.num_points, len(model.paths)) == before


def test_unwritable_out_is_found_before_the_model_starts(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = main(["generate", "--scene", "room", "--preset", "orbit_right", "--frames", "2", "--out", str(blocker / "sub")])
    assert rc == 2 and "is not writable" in capsys.readouterr().err
    import worldstereo.model as model_mod

    started = []
    monkeypatch.setattr(model_mod.WorldStereo, "start", lambda *a, **k: started.append(1))
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "NamedTemporaryFile", refuse)
    rc = main(["generate", "--scene", "room", "--preset", "orbit_right", "--frames", "2", "--out", str(tmp_path / "ro")])
    assert rc == 2 and "not writable: Permission denied" in capsys.readouterr().err and not started


def test_a_full_disk_leaves_a_clearly_partial_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "run"
    real_save = Image.Image.save
    depth_writes = []

    def save(self, fp, *args, **kwargs):
        if "/depth/" in str(fp):
            depth_writes.append(fp)
            if len(depth_writes) == 3:  # the third depth map: a few bytes land, then the disk is full
                Path(fp).write_bytes(b"\x89PNG\r\n")
                raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    rc = main(["generate", "--scene", "room", "--preset", "orbit_right", "--frames", "5", "--size", "64x48",
               "--out", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "No space left on device" in err and str(out / "depth" / "002.png") in err
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is False and "No space left" in run["reason"]
    finals = [p for p in out.rglob("*") if p.is_file() and not p.name.startswith(".")]
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["000.png", "001.png"]  # 002 never appeared
    for p in finals:
        if p.suffix == ".png":
            assert _whole_png(p), p
    assert not (out / "video.mp4").exists() and not list(out.rglob(".*tmp*"))


def test_kill_9_mid_run_leaves_only_whole_files(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "worldstereo.cli", "generate", "--scene", "room", "--preset", "orbit_right",
         "--frames", "200", "--size", "64x48", "--out", str(out), "--quiet", "--fill", "telea"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / "frames" / "004.png").exists():
            time.sleep(0.05)
        assert (out / "frames" / "004.png").exists(), "the run did not get going"
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is False and run["reason"].startswith("running")
    pngs = [p for p in out.rglob("*.png") if not p.name.startswith(".")]
    assert len(pngs) >= 5 and all(_whole_png(p) for p in pngs)
    assert not (out / "video.mp4").exists() and not (out / "snapshot").exists()


def test_a_whole_run_says_complete(tmp_path):
    out = tmp_path / "run"
    assert main(["generate", "--scene", "room", "--preset", "orbit_right", "--frames", "2", "--size", "64x48",
                 "--out", str(out), "--quiet", "--no-snapshot"]) == 0
    run = json.loads((out / "run.json").read_text())
    assert run["complete"] is True and run["reason"] == "" and run["paths"][0]["frames"] == 2
    assert torch.is_tensor(torch.tensor(run["points"]))
