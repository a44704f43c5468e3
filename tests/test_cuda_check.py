"""``python -m benchmarks.cuda_check``: its comparisons run end to end (here the CPU against itself, at reduced
sizes; on a machine with a GPU the same code compares CUDA with the CPU)."""

from __future__ import annotations

import json

import pytest
import torch

import benchmarks.bench_ggm_query as bench_query
import benchmarks.bench_ggm_update as bench_update
import benchmarks.bench_splat as bench_splat
from benchmarks import cuda_check


@pytest.fixture
def small_scenes(monkeypatch):
    monkeypatch.setattr(bench_splat, "NUM_POINTS", 20_000)
    monkeypatch.setattr(bench_update, "NUM_STORED", 40_000)
    monkeypatch.setattr(bench_update, "NUM_NEW", 8000)
    monkeypatch.setattr(bench_query, "NUM_POINTS", 5000)
    monkeypatch.setattr(bench_query, "NUM_QUERIES", 2000)
    monkeypatch.setattr(cuda_check, "KNN_POINTS", 20_000)
    monkeypatch.setattr(cuda_check, "KNN_QUERIES", 2000)


def test_every_check_runs_and_agrees_with_itself_on_the_cpu(small_scenes, capsys):
    assert cuda_check.main(["--device", "cpu"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out.strip().splitlines()[-1])
    rows = {r["name"]: r for r in report["rows"]}
    assert set(rows) == set(cuda_check.CHECKS) and all(r["ok"] for r in rows.values())
    # the torch merge against the compiled one: float32 means taken in one step rather than running
    assert rows["ggm_update"]["difference"] <= 1e-6 and "merged" in rows["ggm_update"]["detail"]
    assert rows["splat"]["detail"].startswith("0.0000%")
    assert all(r["cpu_ms"] > 0 and r["device_ms"] > 0 for r in rows.values())
    assert "| splat |" in out and "| ssm_attention |" in out


def test_a_difference_beyond_tolerance_fails_the_run(small_scenes, monkeypatch, capsys):
    monkeypatch.setitem(cuda_check.TOLERANCE, "ssm_attention", -1.0)  # nothing can be that close
    assert cuda_check.main(["ssm_attention", "--device", "cpu"]) == 1
    assert "DIFFERS" in capsys.readouterr().out


def test_without_cuda_it_says_so_and_exits_2(capsys):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    assert cuda_check.main([]) == 2
    assert "no CUDA device" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cuda_check.main(["nonsense", "--device", "cpu"])
