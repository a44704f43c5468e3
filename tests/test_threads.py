"""The thread policy: one budget from the cores this process may use, applied to every pool, divided among generations."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import pytest
import torch

from worldstereo import threads
from worldstereo.threads import ThreadPolicy, apply_threads, available_cores, thread_budget

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def restore_threads():
    before = (torch.get_num_threads(), cv2.getNumThreads(), threads._process_threads)
    env = {k: os.environ.get(k) for k in (*threads._POOL_ENV, threads.THREADS_ENV)}
    yield
    torch.set_num_threads(before[0])
    cv2.setNumThreads(before[1])
    threads._process_threads = before[2]
    threads._local.__dict__.clear()
    for k, v in env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def test_cores_come_from_the_affinity_and_a_cgroup_quota(tmp_path, monkeypatch):
    assert available_cores() == min(len(os.sched_getaffinity(0)), threads._cgroup_quota() or 10**6)
    f = tmp_path / "cpu.max"
    for text, want in (("200000 100000", 2), ("150000 100000", 2), ("50000 100000", 1), ("max 100000", None),
                       ("garbage", None)):
        f.write_text(text)
        assert threads._cgroup_quota(str(f)) == want, text
    assert threads._cgroup_quota(str(tmp_path / "missing")) is None
    monkeypatch.setattr(threads, "_cgroup_quota", lambda: 1)
    assert available_cores() == 1


def test_the_environment_overrides_the_budget_and_bad_values_are_refused(monkeypatch):
    monkeypatch.setenv("WORLDSTEREO_THREADS", "3")
    assert thread_budget() == 3
    monkeypatch.setenv("WORLDSTEREO_THREADS", "")
    assert thread_budget() == available_cores()
    for bad in ("0", "-2", "two", "1.5"):
        monkeypatch.setenv("WORLDSTEREO_THREADS", bad)
        with pytest.raises(ValueError, match="WORLDSTEREO_THREADS must be a positive integer"):
            thread_budget()


def test_apply_sizes_torch_opencv_numba_and_blas(restore_threads):
    import numba
    from threadpoolctl import threadpool_info

    apply_threads(1)
    assert torch.get_num_threads() == 1 and cv2.getNumThreads() == 1 and numba.get_num_threads() == 1
    assert all(p["num_threads"] == 1 for p in threadpool_info() if p["user_api"] == "blas")
    assert threads.current_threads() == 1
    n = min(2, numba.config.NUMBA_NUM_THREADS)
    apply_threads(n)
    assert torch.get_num_threads() == n and cv2.getNumThreads() == n and numba.get_num_threads() == n


def test_a_fresh_process_sizes_pools_before_they_start():
    # numba and the OpenMP runtimes read their pool size once, when first imported: the CLI
    # configures the process before anything imports numba
    code = ("import worldstereo.threads as t, sys; t.configure_process(); assert 'numba' not in sys.modules; "
            "import numba, torch, cv2; print(numba.config.NUMBA_NUM_THREADS, numba.get_num_threads(), "
            "torch.get_num_threads(), cv2.getNumThreads())")
    env = {**os.environ, "WORLDSTEREO_THREADS": "1", "PYTHONPATH": str(ROOT)}
    env.pop("NUMBA_NUM_THREADS", None)
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["1", "1", "1", "1"]


def test_the_cli_refuses_a_bad_budget_with_one_line():
    env = {**os.environ, "WORLDSTEREO_THREADS": "lots", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "worldstereo.cli", "scenes"], env=env, capture_output=True, text=True)
    assert out.returncode == 2
    assert out.stderr.strip() == "error: WORLDSTEREO_THREADS must be a positive integer (threads), got 'lots'"


def test_generations_divide_the_budget(restore_threads):
    policy = ThreadPolicy(budget=4)
    assert policy.share() == 4
    inside, release = threading.Barrier(2), threading.Event()
    seen: dict[str, int] = {}

    def other() -> None:
        with policy.generation() as n:
            seen["other_start"] = n
            inside.wait()
            release.wait()

    with policy.generation() as first:
        assert first == 4 and threads.current_threads() == 4
        t = threading.Thread(target=other)
        t.start()
        inside.wait()
        assert seen["other_start"] == 2 and policy.active == 2
        assert policy.refresh() == 2 and torch.get_num_threads() == 2 and threads.current_threads() == 2
        release.set()
        t.join()
        assert policy.active == 1 and policy.refresh() == 4
    assert policy.active == 0
    assert ThreadPolicy(budget=3).share() == 3 and ThreadPolicy(budget=0).budget == 1


def test_lama_sessions_use_the_budget_and_do_not_spin(restore_threads, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    import onnx
    from onnx import TensorProto, helper

    from worldstereo.backends import fill

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
    model = helper.make_model(helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g", [x], [y]),
                              opset_imports=[helper.make_opsetid("", 13)])
    path = tmp_path / "identity.onnx"
    onnx.save(model, str(path))
    apply_threads(1)
    session = fill._session(path, "cpu", ort)
    try:
        opts = session.get_session_options()
        assert opts.intra_op_num_threads == 1 and opts.inter_op_num_threads == 1
        assert opts.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    finally:
        fill._sessions.pop((str(path.resolve()), "cpu"), None)


def test_the_app_names_its_compute(monkeypatch):
    from ui.engine_status import device_label

    monkeypatch.setattr(threads, "_shared", ThreadPolicy(budget=3))
    monkeypatch.setattr(threads, "_process_threads", 3)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_label() == "CPU (3 threads)"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=0: "NVIDIA H200")
    assert device_label(torch.device("cuda")) == "CUDA (NVIDIA H200)"
    assert device_label(torch.device("cpu")) == "CUDA (NVIDIA H200); memories on the CPU"
