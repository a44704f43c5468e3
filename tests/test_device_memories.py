"""Memories on the generator's device: the config's ``device``, and the GGM's torch path (what runs on a GPU),
run here on the CPU and checked against the compiled CPU path."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from worldstereo import devices, trajectory
from worldstereo.memory import ggm_storage
from worldstereo.memory.global_geometric import GlobalGeometricMemory
from worldstereo.model import WorldStereo, WorldStereoConfig
from worldstereo.scenes import get_scene


@pytest.fixture
def torch_path(monkeypatch):
    """Run the GGM's device path on CPU buffers."""

    def use(on: bool) -> None:
        monkeypatch.setattr(ggm_storage, "TORCH_PATH_ON_CPU", on)

    return use


def _drive(mem: GlobalGeometricMemory, seed: int, explicit: bool, with_colors: bool) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(20_000, 3, generator=g)
    feats = torch.randn(20_000, mem.point_cloud_dim, generator=g) if explicit else None
    mem.initialize(base, features=feats, colors=torch.rand(20_000, 3, generator=g))
    out = []
    for i in range(5):
        near = base[torch.randint(0, 20_000, (3000,), generator=g)] + 0.002 * torch.randn(3000, 3, generator=g)
        new = torch.cat([near, torch.rand(3000, 3, generator=g) * 2.0])
        pose = torch.eye(4)
        pose[:3, 3] = torch.tensor([float(i), 0.5, -1.0])
        out.append(mem.update(
            new, pose, merge_threshold=0.01,
            new_features=torch.randn(6000, mem.point_cloud_dim, generator=g) if explicit else None,
            colors=torch.rand(6000, 3, generator=g) if with_colors else None,
            confidence=torch.rand(6000, generator=g),
        ))
        out.append(mem.observe(torch.randint(0, mem.num_points, (800,), generator=g), pose))
    return out


@pytest.mark.parametrize("explicit,with_colors", [(False, True), (True, False)])
def test_the_device_path_equals_the_compiled_cpu_path(torch_path, explicit, with_colors):
    states, stats = [], []
    for on in (False, True):
        torch_path(on)
        mem = GlobalGeometricMemory(point_cloud_dim=8, feature_dim=4, max_points=30_000)
        stats.append(_drive(mem, 3, explicit, with_colors))
        states.append({k: v.clone() for k, v in mem.state_dict().items()})
    assert stats[0] == stats[1]  # the same merges, appends, re-observations and evictions
    assert sum(s["num_evicted"] for s in stats[0]) > 0 and sum(s["num_merged"] for s in stats[0]) > 0
    for name, cpu in states[0].items():
        dev = states[1][name]
        assert cpu.shape == dev.shape, name
        if cpu.is_floating_point():
            torch.testing.assert_close(dev, cpu, atol=2e-6, rtol=1e-5, msg=name)  # float32 running means
        else:
            assert torch.equal(dev, cpu), name


def test_merges_average_every_observation_and_keep_the_highest_confidence(torch_path):
    torch_path(True)
    mem = GlobalGeometricMemory(point_cloud_dim=4, feature_dim=2)
    mem.initialize(torch.tensor([[0.0, 0.0, 0.0], [5.0, 0.0, 0.0]]), colors=torch.zeros(2, 3),
                   confidence=torch.tensor([0.3, 1.0]))
    new = torch.tensor([[0.01, 0.0, 0.0], [0.0, 0.02, 0.0], [0.0, 0.0, -0.03], [9.0, 9.0, 9.0]])
    out = mem.update(new, torch.eye(4), merge_threshold=0.05, colors=torch.ones(4, 3),
                     confidence=torch.tensor([0.2, 0.9, 0.1, 0.5]))
    assert (out["num_merged"], out["num_added"], out["total_points"]) == (3, 1, 3)
    torch.testing.assert_close(mem.point_cloud[0], torch.tensor([0.01, 0.02, -0.03]) / 4)  # mean of 4 observations
    torch.testing.assert_close(mem.point_colors[0], torch.full((3,), 0.75))
    assert mem.observation_counts.tolist() == [4, 1, 1]
    assert mem.point_confidence.tolist() == pytest.approx([0.9, 1.0, 0.5])
    assert mem.last_seen.tolist() == [1, 0, 1]


def test_a_path_generates_alike_on_either_path(torch_path):
    scene = get_scene("room")
    view = scene.start_view(128, 96)
    runs = []
    for on in (False, True):
        torch_path(on)
        model = WorldStereo(WorldStereoConfig(width=128, height=96, fill="telea", depth_backend="prior"))
        model.start(view.image, view.depth, view.camera)
        cams = trajectory.preset("orbit_left", model.start_camera, 6, scene_depth=model.scene_depth, angle=20.0)
        frames = [s.image for s in model.generate(cams, 6)]
        runs.append((torch.stack(frames), model.ggm.num_points))
    (a, na), (b, nb) = runs
    assert abs(na - nb) <= 0.001 * na
    assert float((a - b).abs().mean()) < 1e-3


def test_config_device_names_are_checked():
    for good in ("auto", "cpu", "cuda", "cuda:1"):
        assert WorldStereoConfig(device=good).device == good
    for bad in ("gpu", "cuda:x", "CUDA", "", "mps"):
        with pytest.raises(ValueError, match="device must be one of"):
            WorldStereoConfig(device=bad)


def test_auto_is_cuda_where_present_but_not_on_zero_gpu(monkeypatch):
    monkeypatch.delenv("SPACES_ZERO_GPU", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert devices.resolve_device("auto") == torch.device("cpu")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        devices.resolve_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert devices.resolve_device("auto") == torch.device("cuda")
    with pytest.raises(ValueError, match="1 CUDA device"):
        devices.resolve_device("cuda:3")
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    assert devices.resolve_device("auto") == torch.device("cpu")  # custom kernels stop outside @spaces.GPU
    assert WorldStereoConfig(device="auto").model_device() is None and WorldStereoConfig(device="cuda").model_device() == "cuda"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_a_named_gpu_without_one_fails_clearly_and_cpu_keeps_warp():
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        WorldStereo(WorldStereoConfig(width=64, height=48, device="cuda"))
    model = WorldStereo(WorldStereoConfig(width=64, height=48, device="cpu"))
    assert model.ggm.point_cloud.device.type == "cpu" and model.ssm.features.device.type == "cpu"


def test_a_snapshot_saved_on_a_gpu_loads_here(tmp_path):
    scene = get_scene("room")
    view = scene.start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, fill="telea"))
    model.start(view.image, view.depth, view.camera)
    model.save(tmp_path / "snap")
    meta_file = tmp_path / "snap" / "state.json"
    meta = json.loads(meta_file.read_text())
    assert meta["config"]["device"] == "auto"
    meta["config"]["device"] = "cuda"  # as a GPU machine writes it
    meta_file.write_text(json.dumps(meta))
    loaded = WorldStereo.load(tmp_path / "snap")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert loaded.ggm.point_cloud.device.type == want
    assert np.allclose(loaded.ggm.point_cloud.cpu().numpy(), model.ggm.point_cloud.numpy())
