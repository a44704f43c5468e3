"""MoGe-2 weights through the real download path, against a local fake Hub on 127.0.0.1.

A tiny MoGe-2 checkpoint with random weights is built here and served by ``tests/fake_hub.py``;
``HF_ENDPOINT`` points at it and ``HF_HOME`` at a fresh cache, so nothing leaves this machine.
"""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
import torch

from tests.fake_hub import FakeHub, point_at
from tests.test_depth_backends import _image, _set_focal_sign, _tiny_moge_config
from worldstereo import hub
from worldstereo.backends import depth_moge
from worldstereo.backends.depth_moge import MOGE_DEFAULT_REPOS, MoGeDepth, MoGeUnavailableError, resolve_moge_weights
from worldstereo.backends.depth_prior import LayoutPriorDepth
from worldstereo.backends.factory import default_depth_estimator

pytest.importorskip("moge")
CPU_REPO = MOGE_DEFAULT_REPOS["cpu"]


@pytest.fixture(autouse=True)
def _no_backoff_waits(monkeypatch):
    """huggingface_hub retries a 500 or a time-out up to five times with 1-8 s of back-off between (23 s for a 500):
    the same requests are made here, without the waits."""
    import types

    from huggingface_hub.utils import _http

    monkeypatch.setattr(_http, "time", types.SimpleNamespace(sleep=lambda _s: None))


@pytest.fixture(scope="module")
def tiny_checkpoint() -> tuple[bytes, torch.nn.Module]:
    """(bytes of model.pt, the model it holds): MoGe-2's layout, random weights, valid focal sign."""
    from moge.model.v2 import MoGeModel

    torch.manual_seed(0)
    model = MoGeModel(**_tiny_moge_config()).eval()
    with torch.no_grad():
        model.mask_head.output_blocks[-1].bias.fill_(8.0)
    _set_focal_sign(model, positive=True)
    buf = io.BytesIO()
    torch.save({"model_config": _tiny_moge_config(), "model": model.state_dict()}, buf)
    return buf.getvalue(), model


@pytest.fixture
def fake_hub(tmp_path, monkeypatch, tiny_checkpoint):
    """A started fake Hub serving the tiny checkpoint as every default MoGe-2 variant; a fresh cache."""
    data, _ = tiny_checkpoint
    server = FakeHub().start()
    for repo in set(MOGE_DEFAULT_REPOS.values()):
        server.add(repo, "model.pt", data)
    point_at(server, monkeypatch, tmp_path / "hf")
    monkeypatch.delenv("WORLDSTEREO_MOGE_WEIGHTS", raising=False)
    depth_moge._models.clear()
    yield server
    server.stop()
    hub.forget_failures()
    depth_moge._models.clear()


def test_first_start_downloads_once_then_the_cache_answers(fake_hub, tmp_path, tiny_checkpoint):
    path = resolve_moge_weights(device="cpu", show_progress=False)
    assert fake_hub.count("GET", "model.pt") == 1
    assert path.is_file() and path.read_bytes() == tiny_checkpoint[0]
    assert (tmp_path / "hf" / "hub") in path.parents  # HF_HOME honoured
    assert "models--Ruicheng--moge-2-vits-normal" in str(path)  # the small variant on a CPU
    before = len(fake_hub.requests)
    again = resolve_moge_weights(device="cpu", show_progress=False)
    assert again == path and len(fake_hub.requests) == before  # second start: no request at all


def test_depth_through_downloaded_weights_equals_the_model(fake_hub, tiny_checkpoint):
    _, model = tiny_checkpoint
    image = _image(24, 32)
    done: list[tuple[int, int | None]] = []
    est = MoGeDepth(device="cpu", progress=lambda n, total: done.append((n, total)))
    assert est.variant == CPU_REPO
    assert done and done[-1][0] == done[-1][1] == len(tiny_checkpoint[0])  # progress reached the total
    got = est.estimate(image)
    want = MoGeDepth(model=model).estimate(image)
    assert torch.allclose(got.depth, want.depth) and torch.allclose(got.intrinsics, want.intrinsics)
    assert not got.approximate and CPU_REPO in got.message


def test_auto_in_the_model_uses_moge_and_reports_it(fake_hub):
    from worldstereo.model import WorldStereo, WorldStereoConfig

    model = WorldStereo(WorldStereoConfig(width=64, height=48, depth_backend="auto"))
    info = model.start((torch.rand(48, 64, 3) * 255).to(torch.uint8))
    assert info.depth_source == "moge" and info.depth_model == CPU_REPO and not info.approximate
    assert info.fallback_reason is None


def test_two_first_requests_at_once_download_once(fake_hub):
    fake_hub.mode, fake_hub.delay = "slow", 0.3
    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(resolve_moge_weights(device="cpu", show_progress=False))
        except BaseException as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=worker) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and len(results) == 3 and len(set(results)) == 1
    assert fake_hub.count("GET", "model.pt") == 1


def test_models_are_shared_within_the_process(fake_hub):
    a, b = MoGeDepth(device="cpu", show_progress=False), MoGeDepth(device="cpu", show_progress=False)
    assert a.model is b.model


def test_server_down_falls_back_to_the_prior_with_the_reason(fake_hub, monkeypatch):
    import huggingface_hub

    fake_hub.stop()
    entered: list[str] = []

    def retrying_download(*args, **kwargs):  # huggingface_hub would retry a dead host 5 times (23 s)
        entered.append(args[0])
        raise OSError("connection refused")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", retrying_download)
    est = default_depth_estimator(device="cpu", show_progress=False)
    assert isinstance(est, LayoutPriorDepth) and est.fallback_reason == "download_failed"
    msg = est.estimate(_image(8, 8)).message
    assert "approximate" in msg and "could not download" in msg and CPU_REPO in msg
    assert "cannot be reached" in msg and "127.0.0.1" in msg
    assert "download-weights" in msg  # how to fix it
    # a second file (LaMa's) learns from the same probe: no download attempt, no waiting
    with pytest.raises(hub.WeightsUnavailableError, match="cannot be reached"):
        hub.fetch_file("owner/other", "weights.onnx", show_progress=False)
    assert entered == []  # the dead host was found by one quick connection, never by the retrying download
    assert hub.hub_unreachable() is not None
    with FakeHub() as live:
        assert hub.hub_unreachable(live.url) is None  # a Hub that answers is found at once


def test_a_name_server_that_never_answers_costs_one_probe_time_out(monkeypatch):
    """No reachable name server (a sandboxed GPU machine): getaddrinfo hangs; the probe gives up after its time-out."""
    import socket
    import threading

    release = threading.Event()
    lookups: list[str] = []

    def hanging(host, *args, **kwargs):
        lookups.append(host)
        release.wait(30)
        raise OSError("too late")

    monkeypatch.setattr(socket, "getaddrinfo", hanging)
    monkeypatch.setattr(hub, "PROBE_TIMEOUT_S", 0.3)
    monkeypatch.delenv("HTTPS_PROXY", raising=False)
    monkeypatch.delenv("https_proxy", raising=False)
    hub.forget_failures()
    try:
        reason = hub.hub_unreachable("https://hub.invalid")
        # the answer came while the lookup still hung: the probe did not wait for the resolver
        assert not release.is_set() and lookups == ["hub.invalid"]
        assert reason is not None and "did not resolve within 0.3 s" in reason
        assert hub.hub_unreachable("https://hub.invalid") == reason  # remembered ...
        assert lookups == ["hub.invalid"]  # ... without a second lookup
    finally:
        release.set()
        hub.forget_failures()


def test_error_500_falls_back_and_is_remembered_briefly(fake_hub):
    fake_hub.mode = "error500"
    with pytest.raises(MoGeUnavailableError) as info:
        resolve_moge_weights(device="cpu", show_progress=False)
    assert info.value.reason == "download_failed"
    n = len(fake_hub.requests)
    with pytest.raises(MoGeUnavailableError):
        resolve_moge_weights(device="cpu", show_progress=False)
    assert len(fake_hub.requests) == n  # the next session does not wait for the network again
    hub.forget_failures()
    fake_hub.mode = "ok"
    assert resolve_moge_weights(device="cpu", show_progress=False).is_file()  # the Hub is back: it works


def test_a_hub_that_times_out_falls_back_and_leaves_nothing_broken(fake_hub, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(hub, "METADATA_TIMEOUT_S", 0.3)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 0.3)
    fake_hub.mode, fake_hub.delay = "slow", 1.0  # answers, but later than the timeouts
    est = default_depth_estimator(device="cpu", show_progress=False)
    assert isinstance(est, LayoutPriorDepth) and est.fallback_reason == "download_failed"
    assert "could not download" in est.estimate(_image(8, 8)).message
    assert hub.cached_file(CPU_REPO, "model.pt") is None  # no half file under the cache's final name
    hub.forget_failures()
    fake_hub.mode = "ok"
    path = resolve_moge_weights(device="cpu", show_progress=False)  # the next start is not broken by it
    hub.check_zip_archive(path)


def test_offline_mode_says_so(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MoGeUnavailableError, match="HF_HUB_OFFLINE") as info:
        resolve_moge_weights(device="cpu")
    assert info.value.reason == "offline" and not fake_hub.requests


@pytest.mark.parametrize("mode", ["corrupt", "truncate"])
def test_bad_download_is_rejected_and_not_kept(fake_hub, tmp_path, mode):
    fake_hub.mode = mode
    with pytest.raises(MoGeUnavailableError) as info:
        resolve_moge_weights(device="cpu", show_progress=False)
    assert info.value.reason in {"corrupt", "download_failed"}
    assert hub.cached_file(CPU_REPO, "model.pt") is None  # nothing half-written left in the cache
    blobs = list((tmp_path / "hf" / "hub").rglob("blobs/*"))
    assert all(b.name.endswith(".lock") or b.stat().st_size == 0 for b in blobs if b.is_file()) or not blobs
    # the next start downloads a good copy
    hub.forget_failures()
    fake_hub.mode = "ok"
    assert resolve_moge_weights(device="cpu", show_progress=False).read_bytes() == fake_hub.files[(CPU_REPO, "model.pt")]


def test_corrupt_cached_copy_is_removed(fake_hub):
    path = resolve_moge_weights(device="cpu", show_progress=False)
    hub._verified.clear()  # a new process
    blob = path.resolve()
    blob.write_bytes(blob.read_bytes()[:100])  # damaged on disk
    with pytest.raises(MoGeUnavailableError, match="corrupt") as info:
        resolve_moge_weights(device="cpu", show_progress=False)
    assert info.value.reason == "corrupt" and hub.cached_file(CPU_REPO, "model.pt") is None


def test_explicit_repo_and_env_order(fake_hub, tmp_path, monkeypatch, tiny_checkpoint):
    vitl = MOGE_DEFAULT_REPOS["cuda"]
    assert "vitl" in vitl and "vits" in CPU_REPO
    assert resolve_moge_weights(vitl, show_progress=False) == hub.cached_file(vitl, "model.pt")
    local = tmp_path / "mine.pt"
    local.write_bytes(tiny_checkpoint[0])
    monkeypatch.setenv("WORLDSTEREO_MOGE_WEIGHTS", str(local))
    n = len(fake_hub.requests)
    assert resolve_moge_weights(device="cpu") == local  # the variable wins over the Hub
    assert resolve_moge_weights(str(local)) == local
    assert len(fake_hub.requests) == n


def test_download_weights_command(fake_hub, capsys):
    from worldstereo.cli import main

    assert main(["download-weights", "--device", "all", "--no-fill", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert all(repo in out for repo in MOGE_DEFAULT_REPOS.values())
    assert fake_hub.count("GET", "model.pt") == len(set(MOGE_DEFAULT_REPOS.values()))
    assert main(["download-weights", "--device", "cpu", "--no-fill", "--quiet"]) == 0  # cached: no second download
    assert fake_hub.count("GET", "model.pt") == len(set(MOGE_DEFAULT_REPOS.values()))
    fake_hub.stop()
    assert main(["download-weights", "--depth-model", "Ruicheng/moge-2-vitb-normal", "--no-fill", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "could not download" in err and len(err.strip().splitlines()) == 1
