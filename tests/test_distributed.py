"""Ray: a world's rounds on 1 and 2 workers, batches (bad inputs, reruns, a killed worker), and a two-node
cluster simulated in one process. Ray starts once for this module (embedded, 2 CPUs) and once more for the
cluster test, at the end."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import numpy as np
import pytest
import torch
from PIL import Image

ray = pytest.importorskip("ray")

from world_inputs import room_photo_and_two_walk_plan  # noqa: E402

from worldstereo.backends.factory import make_generator  # noqa: E402
from worldstereo.cli import main  # noqa: E402
from worldstereo.config import WorldStereoConfig  # noqa: E402
from worldstereo.exports import write_image_png  # noqa: E402
from worldstereo.model import WorldStereo  # noqa: E402
from worldstereo.scenes import get_scene  # noqa: E402
from worldstereo.world import Trajectory, WorldPlan, build_world  # noqa: E402
from worldstereo.world.distributed import ray_executor  # noqa: E402

W, H = 64, 48
PLAN = WorldPlan(((Trajectory("a", "orbit_left", {"angle": 15.0}), Trajectory("b", "orbit_right", {"angle": 15.0}),
                   Trajectory("c", "pan_left", {"angle": 20.0})),
                  (Trajectory("d", "eloop", {"rx": 0.1, "ry": 0.1}),)), frames=3)


@pytest.fixture(scope="module")
def local_ray():
    ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


def _config() -> WorldStereoConfig:
    return WorldStereoConfig(width=W, height=H, generator="warp", fill="telea", depth_backend="prior")


def _world(out, executor=None):
    view = get_scene("room").start_view(W, H)

    def make_model(start: bool) -> WorldStereo:
        model = WorldStereo(_config(), generator=make_generator(_config()).generator)
        if start:
            model.start(view.image, view.depth, view.camera)
        return model

    # (the plan's round as given: three trajectories in parallel)
    return build_world(PLAN, out, {"input": "scene room"}, make_model, progress=False, executor=executor,
                       split_rounds=False)


def _images(folder) -> dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted((folder / "world" / "images").glob("*.png"))}


def test_a_world_is_the_same_on_one_and_two_workers_and_in_process(local_ray, tmp_path):
    one = _world(tmp_path / "one", ray_executor(local_ray, workers=1))
    two = _world(tmp_path / "two", ray_executor(local_ray, workers=2))
    here = _world(tmp_path / "here")
    a, b, c = (WorldStereo.load(tmp_path / n / "state" / "current") for n in ("one", "two", "here"))
    assert torch.equal(a.ggm.point_cloud, b.ggm.point_cloud) and one.points == two.points
    ia, ib, ic = _images(tmp_path / "one"), _images(tmp_path / "two"), _images(tmp_path / "here")
    # (each trajectory's first frame is the input pose, and the eloop's last too: not exported)
    assert ia.keys() == ib.keys() == ic.keys() and len(ia) == 1 + 4 * 2 - 1
    assert all(np.array_equal(ia[k], ib[k]) for k in ia)
    # in process: the same world (torch may order a reduction differently with its own thread count)
    assert max(int(np.abs(ia[k].astype(int) - ic[k].astype(int)).max()) for k in ia) <= 2
    assert abs(c.ggm.num_points - a.ggm.num_points) <= 0.005 * a.ggm.num_points and here.frames == one.frames
    assert [k.frame_id for k in a.keyframes] == [k.frame_id for k in c.keyframes]


def _inputs(tmp_path) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(2):
        img = (rng.random((H // 8, W // 8, 3)) * 255).astype(np.uint8).repeat(8, 0).repeat(8, 1)
        write_image_png(tmp_path / f"photo{i}.png", img)
        paths.append(str(tmp_path / f"photo{i}.png"))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    (tmp_path / "list.txt").write_text(f"{paths[1]}\n# a comment\nbroken.png\n")
    return [paths[0], str(tmp_path / "list.txt")]


def _batch(tmp_path, extra=()):
    return main(["batch", *_inputs(tmp_path), "--preset", "orbit_left", "--frames", "3", "--size", f"{W}x{H}",
                 "--fill", "telea", "--depth-backend", "prior", "--out", str(tmp_path / "out"), "--quiet", *extra])


def test_batch_a_bad_input_fails_only_its_entry_and_a_rerun_skips_what_is_complete(local_ray, tmp_path):
    assert _batch(tmp_path) == 2
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())}
    assert rows["photo0"]["status"] == rows["photo1"]["status"] == "complete" and rows["photo0"]["frames"] == 3
    assert rows["photo1"]["input"] == str(tmp_path / "photo1.png") and os.path.isabs(rows["photo1"]["input"])
    assert rows["broken"]["status"] == "failed" and "not an image file" in rows["broken"]["error"]
    assert (tmp_path / "out" / "summary.csv").read_text().splitlines()[0] == "input,name,status,frames,seconds,error"
    # warm workers: a process builds its depth model and generator once, for the first input it runs
    by_pid: dict[int, list[int]] = {}
    for r in rows.values():
        by_pid.setdefault(r["pid"], []).append(r["models_built"])
    assert all(sum(1 for b in built if b) <= 1 for built in by_pid.values()), by_pid
    assert rows["broken"]["models_built"] == 0
    before = (tmp_path / "out" / "photo0" / "run.json").stat().st_mtime_ns
    assert _batch(tmp_path) == 2
    rows = {r["name"]: r for r in json.loads((tmp_path / "out" / "summary.json").read_text())}
    assert rows["photo0"]["status"] == "complete (earlier run)"
    assert (tmp_path / "out" / "photo0" / "run.json").stat().st_mtime_ns == before  # not run again


def test_batch_survives_a_killed_worker(local_ray, tmp_path):
    """Kill the process running an input (by its PID) mid-task: Ray retries it and every result is whole."""
    out = tmp_path / "out"
    _inputs(tmp_path)
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(rc=main([
        "batch", str(tmp_path / "photo0.png"), str(tmp_path / "photo1.png"), "--preset", "orbit_left", "--frames", "12",
        "--size", f"{W}x{H}", "--fill", "telea", "--depth-backend", "prior", "--out", str(out), "--quiet"])))
    thread.start()
    pid, deadline = None, time.monotonic() + 120
    while pid is None and time.monotonic() < deadline:
        found = sorted((out / ".running").glob("*.pid")) if (out / ".running").is_dir() else []
        try:
            pid = int(found[0].read_text()) if found else None  # read at once: a fast task removes its file
        except (FileNotFoundError, ValueError):
            pid = None
        time.sleep(0.05)
    assert pid is not None, "no task started"
    time.sleep(0.3)  # in the middle of its frames (Ray keeps the worker for its next task, so it is alive)
    os.kill(pid, signal.SIGKILL)
    thread.join(timeout=300)
    assert result.get("rc") == 0
    rows = json.loads((out / "summary.json").read_text())
    assert [r["status"] for r in rows] == ["complete", "complete"] and all(r["frames"] == 12 for r in rows)
    for r in rows:
        run = json.loads((out / r["name"] / "run.json").read_text())
        assert run["complete"] and len(list((out / r["name"] / "frames").glob("*.png"))) == 12


def test_batch_on_a_two_node_cluster(tmp_path):
    from ray.cluster_utils import Cluster

    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        assert len([n for n in ray.nodes() if n["Alive"]]) == 2
        _inputs(tmp_path)
        rc = main(["batch", str(tmp_path / "photo0.png"), str(tmp_path / "photo1.png"), "--preset", "pan_left",
                   "--frames", "2", "--size", f"{W}x{H}", "--fill", "telea", "--depth-backend", "prior",
                   "--out", str(tmp_path / "out"), "--quiet", "--ray-address", cluster.address])
        assert rc == 0
        rows = json.loads((tmp_path / "out" / "summary.json").read_text())
        assert [r["status"] for r in rows] == ["complete", "complete"]
    finally:
        ray.shutdown()
        cluster.shutdown()



def test_batch_results_are_named_after_the_input_or_its_folder(tmp_path):
    """Official examples are all ``image.png`` in named folders: they are named after the folder."""
    from pathlib import Path

    from worldstereo.cli.batch import _names

    ex = "assets/examples/reconstruction"
    inputs = [f"{ex}/Caterpillar/image.png", f"{ex}/bicycle/image.png", f"{ex}/Caterpillar", tmp_path / "garden.jpg",
              tmp_path / "image" / "IMAGE.png", tmp_path / "Room 1" / "pano.jpg", tmp_path / "a" / "photo0.png"]
    assert _names([Path(p) for p in inputs]) == ["Caterpillar", "bicycle", "Caterpillar-2", "garden", "IMAGE",
                                                 "Room_1", "photo0"]


def test_a_warm_worker_builds_its_models_once_and_gives_the_same_frames(tmp_path, monkeypatch):
    """Two inputs run as one worker's tasks: the second reuses the first's depth model and generator, and its
    frames are those of a cold run."""
    from worldstereo.backends import warm
    from worldstereo.cli.batch import run_input

    _inputs(tmp_path)
    monkeypatch.delenv("WORLDSTEREO_THREADS", raising=False)  # (a task body sets it: restored afterwards)

    def argv(i: int, out: str) -> list[str]:
        return ["generate", "--image", str(tmp_path / f"photo{i}.png"), "--preset", "orbit_left", "--frames", "3",
                "--size", f"{W}x{H}", "--fill", "telea", "--depth-backend", "prior", "--out", out, "--quiet",
                "--overwrite"]

    try:
        warm.reset()
        cold = run_input(argv(1, str(tmp_path / "cold")), str(tmp_path / "cold"))
        assert cold["status"] == "complete" and cold["models_built"] == 0  # outside a task nothing is kept
        first = run_input(argv(0, str(tmp_path / "a")), str(tmp_path / "a"), in_task=True)
        second = run_input(argv(1, str(tmp_path / "b")), str(tmp_path / "b"), in_task=True)
        assert (first["models_built"], second["models_built"]) == (2, 0)
        assert sorted(warm.built().values()) == [1, 1]
    finally:
        warm.reset()
    frames = sorted(p.name for p in (tmp_path / "cold" / "frames").glob("*.png"))
    assert len(frames) == 3
    for name in frames:
        assert np.array_equal(np.asarray(Image.open(tmp_path / "cold" / "frames" / name)),
                              np.asarray(Image.open(tmp_path / "b" / "frames" / name)))


def test_the_world_command_on_ray_starts_its_model_while_ray_starts_and_matches_no_ray(local_ray, tmp_path):
    """``worldstereo world --workers 2``: the model starts on a second thread while Ray starts, the workers warm up,
    the round runs on them; the world is the one ``--no-ray`` builds (2/255 per pixel: torch's thread count)."""
    image, plan = room_photo_and_two_walk_plan(tmp_path, W, H, frames=3, angle=15)
    common = ["world", "--image", str(image), "--plan", str(plan), "--size", f"{W}x{H}", "--fill",
              "telea", "--depth-backend", "prior", "--quiet", "--no-mesh"]
    assert main([*common, "--workers", "2", "--out", str(tmp_path / "ray")]) == 0
    assert ray.is_initialized()  # (a Ray this process did not start is left running)
    assert main([*common, "--no-ray", "--out", str(tmp_path / "here")]) == 0
    on_ray, here = _images(tmp_path / "ray"), _images(tmp_path / "here")
    assert on_ray.keys() == here.keys() and len(on_ray) == 1 + 2 * 2
    assert max(int(np.abs(on_ray[k].astype(int) - here[k].astype(int)).max()) for k in on_ray) <= 2
    meta = json.loads((tmp_path / "ray" / "world.json").read_text())
    assert meta["complete"] and meta["done"] == ["a", "b"] and isinstance(meta["seconds"], float)


def test_an_embedded_ray_ends_before_the_exports(tmp_path):
    """In a process of its own (this module's Ray is not the command's): ``--workers 2`` starts an embedded Ray, runs
    the round on it and ends it once the rounds are over; the world is complete."""
    import subprocess
    import sys

    image, plan = room_photo_and_two_walk_plan(tmp_path, W, H, frames=2, angle=10)
    code = (
        "import json, sys\n"
        "from worldstereo.cli import main\n"
        "import worldstereo.world.extras as extras\n"
        "import ray\n"
        "seen = []\n"
        "write = extras.write_extras\n"
        "extras.write_extras = lambda *a, **k: (seen.append(ray.is_initialized()), write(*a, **k))[1]\n"
        "import worldstereo.world.runner as runner\n"
        "runner.write_extras = extras.write_extras\n"
        "folds = []\n"
        "fold = runner.fold\n"
        "runner.fold = lambda *a, **k: (folds.append(ray.is_initialized()), fold(*a, **k))[1]\n"
        "rc = main(sys.argv[1:])\n"
        "print(json.dumps({'rc': rc, 'ray_during_folds': folds, 'ray_during_exports': seen}))\n"
    )
    argv = ["world", "--image", str(image), "--plan", str(plan), "--size", f"{W}x{H}", "--fill", "telea",
            "--depth-backend", "prior", "--quiet", "--no-mesh", "--workers", "2", "--out", str(tmp_path / "w")]
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=300)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"rc": 0, "ray_during_folds": [True, True], "ray_during_exports": [False]}, out.stderr[-2000:]
    meta = json.loads((tmp_path / "w" / "world.json").read_text())
    assert meta["complete"] and meta["done"] == ["a", "b"]
