"""Hole fillers: LaMa through ONNX Runtime (tiny ONNX models in both input conventions, served by the
local fake Hub), Telea, none; only hole pixels change, seams are feathered, any size round-trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.fake_hub import FakeHub, point_at
from worldstereo import hub
from worldstereo.backends import fill as fillmod
from worldstereo.backends.fill import DEFAULT_LAMA, LamaFill, NoFill, TeleaFill, make_filler, read_lama_graph

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

RGBM_LAMA = ("g-ronimo/lama", "lama_int8.onnx")  # the one-input export, opt-in through WORLDSTEREO_LAMA
FILL_VALUE = np.array([0.9, 0.2, 0.1], np.float32)  # what the tiny models paint into holes (before any scale)


def _two_input_model(side: int = 64) -> bytes:
    """Carve-style: image (1,3,S,S) + mask (1,1,S,S) at a fixed size -> (image*(1-m) + m*fill) * 255."""
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1, 3, 1, 1], FILL_VALUE.tolist())
    k255 = helper.make_tensor("k255", TensorProto.FLOAT, [], [255.0])
    one = helper.make_tensor("one", TensorProto.FLOAT, [], [1.0])
    nodes = [
        helper.make_node("Sub", ["one", "mask"], ["inv"]),
        helper.make_node("Mul", ["image", "inv"], ["kept"]),
        helper.make_node("Mul", ["mask", "fill"], ["painted"]),
        helper.make_node("Add", ["kept", "painted"], ["mixed"]),
        helper.make_node("Mul", ["mixed", "k255"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_lama_2in",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, side, side]),
         helper.make_tensor_value_info("mask", TensorProto.FLOAT, [1, 1, side, side])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, side, side])],
        initializer=[fill, k255, one],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def _rgbm_model() -> bytes:
    """g-ronimo-style: one (1,4,H,W) input (masked RGB + mask), any size -> rgb + m * fill in [0, 1]."""
    fill = helper.make_tensor("fill", TensorProto.FLOAT, [1, 3, 1, 1], FILL_VALUE.tolist())
    starts = helper.make_tensor("starts", TensorProto.INT64, [1], [0])
    mid = helper.make_tensor("mid", TensorProto.INT64, [1], [3])
    end = helper.make_tensor("end", TensorProto.INT64, [1], [4])
    axis = helper.make_tensor("axis", TensorProto.INT64, [1], [1])
    nodes = [
        helper.make_node("Slice", ["input", "starts", "mid", "axis"], ["rgb"]),
        helper.make_node("Slice", ["input", "mid", "end", "axis"], ["m"]),
        helper.make_node("Mul", ["m", "fill"], ["painted"]),
        helper.make_node("Add", ["rgb", "painted"], ["output"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny_lama_rgbm",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 4, "H", "W"])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, "H", "W"])],
        initializer=[fill, starts, mid, end, axis],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


@pytest.fixture
def lama_hub(tmp_path, monkeypatch):
    server = FakeHub().start()
    server.add(*DEFAULT_LAMA, _two_input_model())  # Carve/LaMa-ONNX lama.onnx: image + mask, fixed size
    server.add(*RGBM_LAMA, _rgbm_model())
    point_at(server, monkeypatch, tmp_path / "hf")
    fillmod._sessions.clear()
    yield server
    server.stop()
    hub.forget_failures()
    fillmod._sessions.clear()


def _deep(hole: torch.Tensor, distance: float = 12.0) -> torch.Tensor:
    """(H, W) bool: hole pixels at least ``distance`` pixels from the hole's border (past the feathering)."""
    import cv2

    d = cv2.distanceTransform(hole[0].numpy().astype(np.uint8), cv2.DIST_L2, 3)
    return torch.from_numpy(d >= distance)


def _scene(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    y = torch.linspace(0, 1, h).view(h, 1).expand(h, w)
    x = torch.linspace(0, 1, w).view(1, w).expand(h, w)
    image = torch.stack([x, y, 0.5 * (x + y)]) * 0.6 + 0.2 + 0.02 * torch.rand(3, h, w, generator=g)
    hole = torch.zeros(1, h, w, dtype=torch.bool)
    hh, hw = max(28, h // 3), max(30, w // 3)  # >= 5% of the image: the network is called
    hole[0, h // 4 : h // 4 + hh, w // 3 : w // 3 + hw] = True
    return image.clamp(0, 1), hole


@pytest.mark.parametrize("repo_file", [DEFAULT_LAMA, RGBM_LAMA])
@pytest.mark.parametrize("size", [(48, 64), (123, 77), (200, 300)])
def test_only_hole_pixels_change_and_sizes_round_trip(lama_hub, repo_file, size):
    filler = LamaFill(repo=repo_file[0], filename=repo_file[1], show_progress=False)
    image, hole = _scene(*size)
    out = filler.fill(image, hole)
    assert out.shape == image.shape and out.dtype == image.dtype
    assert torch.equal(out[:, ~hole[0]], image[:, ~hole[0]])  # known pixels untouched
    inner = out[:, _deep(hole)]  # away from the border the network's colour shows (after the right scale)
    assert inner.shape[1] > 0
    assert torch.allclose(inner.mean(1), torch.from_numpy(FILL_VALUE), atol=0.06)
    assert filler.calls == 1


def test_graph_conventions_are_read_from_the_model(lama_hub):
    a = LamaFill(repo=RGBM_LAMA[0], filename=RGBM_LAMA[1], show_progress=False)
    b = LamaFill(show_progress=False)  # the default: Carve/LaMa-ONNX
    assert (a.graph.convention, a.graph.size, a.graph.multiple) == ("rgbm", None, 32)
    assert (b.graph.convention, b.graph.size) == ("image+mask", 64)
    assert b.output_scale == pytest.approx(1 / 255)
    # an unknown export in [0, 255] is recognised by its output range
    path = hub.fetch_file("Carve/LaMa-ONNX", "lama.onnx")
    c = LamaFill(weights=path)
    image, hole = _scene(64, 64)
    out = c.fill(image, hole)
    assert c.output_scale is None and float(out.max()) <= 1.0
    assert torch.allclose(out[:, _deep(hole)].mean(1), torch.from_numpy(FILL_VALUE), atol=0.06)  # 255 -> 1


def test_seams_are_feathered(lama_hub):
    filler = LamaFill(show_progress=False)
    image, hole = _scene(96, 128)
    raw = image.clone()
    raw[:, hole[0]] = torch.from_numpy(FILL_VALUE).view(3, 1)  # the network's output pasted without feathering
    out = filler.fill(image, hole)
    border = hole[0] & ~torch.nn.functional.max_pool2d((~hole).float().unsqueeze(0), 3, 1, 1)[0, 0].bool().logical_not()
    outside = torch.nn.functional.max_pool2d(hole.float().unsqueeze(0), 3, 1, 1)[0, 0].bool() & ~hole[0]
    # colour step across the hole border: with feathering much smaller than the network's raw jump
    step_raw = (raw[:, border].mean(1) - image[:, outside].mean(1)).abs().max()
    step = (out[:, border].mean(1) - image[:, outside].mean(1)).abs().max()
    assert float(step) < 0.5 * float(step_raw)


def test_tiny_holes_do_not_call_the_network(lama_hub):
    filler = LamaFill(show_progress=False)
    image, _ = _scene(96, 128)
    hole = torch.zeros(1, 96, 128, dtype=torch.bool)
    hole[0, 10, 10:14] = True
    out = filler.fill(image, hole)
    assert filler.calls == 0 and torch.equal(out[:, ~hole[0]], image[:, ~hole[0]])


def test_auto_uses_lama_from_the_hub_once(lama_hub):
    a = make_filler("auto", show_progress=False)
    b = make_filler("auto", show_progress=False)
    assert isinstance(a, LamaFill) and a.session is b.session
    assert lama_hub.count("GET", DEFAULT_LAMA[1]) == 1
    assert "LaMa" in a.message and "Carve/LaMa-ONNX" in a.message and a.graph.convention == "image+mask"


def test_worldstereo_lama_picks_another_export_or_a_local_file(lama_hub, monkeypatch, tmp_path):
    from worldstereo.backends.fill import LAMA_ENV, lama_source

    monkeypatch.setenv(LAMA_ENV, "/".join(RGBM_LAMA))
    assert lama_source() == RGBM_LAMA
    f = make_filler("auto", show_progress=False)
    assert isinstance(f, LamaFill) and f.graph.convention == "rgbm" and "g-ronimo/lama/lama_int8.onnx" in f.message
    assert lama_hub.count("GET", DEFAULT_LAMA[1]) == 0
    local = tmp_path / "mine.onnx"
    local.write_bytes(_rgbm_model())
    monkeypatch.setenv(LAMA_ENV, str(local))
    assert lama_source() == local and LamaFill(show_progress=False).source == "mine.onnx"
    monkeypatch.setenv(LAMA_ENV, "not-a-repo")
    with pytest.raises(ValueError, match=LAMA_ENV):
        lama_source()
    t = make_filler("auto", show_progress=False)
    assert isinstance(t, TeleaFill) and LAMA_ENV in t.message


def test_missing_weights_fall_back_to_telea_with_the_message(lama_hub):
    lama_hub.stop()
    f = make_filler("auto", show_progress=False)
    assert isinstance(f, TeleaFill) and "LaMa unavailable" in f.message and "could not download" in f.message
    with pytest.raises(hub.WeightsUnavailableError):
        make_filler("lama", show_progress=False)


def test_not_an_onnx_file_is_rejected_and_not_kept(lama_hub):
    lama_hub.add(*DEFAULT_LAMA, b"definitely not onnx" * 100)
    with pytest.raises(hub.WeightsUnavailableError, match="not a readable ONNX model"):
        LamaFill(show_progress=False)
    assert hub.cached_file(*DEFAULT_LAMA) is None
    with pytest.raises(ValueError, match="not a LaMa export"):
        read_lama_graph(type("S", (), {"get_inputs": lambda self: []})())


def test_telea_and_none():
    image, hole = _scene(48, 64)
    t = TeleaFill().fill(image, hole)
    assert torch.equal(t[:, ~hole[0]], image[:, ~hole[0]]) and float(t[:, hole[0]].std()) > 0.01
    n = NoFill().fill(image, hole)
    assert float(n[:, hole[0]].abs().max()) == 0.0 and torch.equal(n[:, ~hole[0]], image[:, ~hole[0]])
    with pytest.raises(ValueError, match="fill must be one of"):
        make_filler("magic")


def test_warp_with_lama_fills_a_scene_and_none_leaves_no_geometry(lama_hub):
    from worldstereo.model import WorldStereo, WorldStereoConfig
    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(128, 96)
    for name in ("lama", "none"):
        model = WorldStereo(WorldStereoConfig(width=128, height=96, fill=name))
        model.start(view.image, view.depth, view.camera)
        steps = list(model.generate("orbit_right", num_frames=3))
        holes = [s.new_surface_mask for s in steps]
        assert any(bool(h.any()) for h in holes)
        last = steps[-1]
        if name == "lama":
            assert model.generator.filler.calls >= 1
            assert bool((last.depth[last.new_surface_mask] > 0).all())  # filled content is geometry
        else:
            assert float(last.image[:, last.new_surface_mask[0]].abs().max()) == 0.0
            assert bool((last.depth[last.new_surface_mask] == 0).all()) and last.memory.points_added == 0


def test_download_weights_fetches_lama_too(lama_hub, capsys):
    import io
    import zipfile

    from worldstereo.backends.depth_moge import MOGE_DEFAULT_REPOS
    from worldstereo.cli import main

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:  # stands in for MoGe's model.pt (only fetched, not loaded)
        zf.writestr("archive/data.pkl", b"x")
    lama_hub.add(MOGE_DEFAULT_REPOS["cpu"], "model.pt", buf.getvalue())
    assert main(["download-weights", "--device", "cpu", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "LaMa Carve/LaMa-ONNX/lama.onnx" in out and hub.cached_file(*DEFAULT_LAMA) is not None


def test_eval_fill_axis_scores_telea_and_cached_lama(lama_hub, capsys):
    from worldstereo.cli import main
    from worldstereo.eval.fill_quality import evaluate_fills, sharpness

    flat = torch.full((3, 16, 16), 0.5)
    mask = torch.ones(16, 16, dtype=torch.bool)
    assert sharpness(flat, mask) == 0.0
    ramp = torch.linspace(0, 1, 16).view(1, 1, 16).expand(3, 16, 16)
    assert sharpness(ramp, mask) == pytest.approx(1 / 15, rel=1e-4)
    scores, notes = evaluate_fills(("room",), 128, 96, 4)
    assert [s.fill for s in scores] == ["telea"] and "lama skipped" in notes[0]
    hub.fetch_file(*DEFAULT_LAMA, show_progress=False)  # now cached: the lama row appears
    scores, notes = evaluate_fills(("room",), 128, 96, 4)
    assert [s.fill for s in scores] == ["telea", "lama"] and not notes
    for s in scores:
        assert s.frames == 8 and 0 < s.hole_share < 1 and 0 < s.psnr < 60 and s.sharpness > 0
    assert scores[1].calls >= 1
    assert main(["eval", "fill", "--scenes", "room", "--size", "128x96", "--frames", "3"]) == 0
    assert "| room | lama |" in capsys.readouterr().out
    assert main(["eval", "fill", "--scenes", "nowhere"]) == 2


def test_lama_look_ahead_keeps_calls_few_and_adds_points_beyond_the_view(lama_hub):
    from worldstereo.model import WorldStereo, WorldStereoConfig
    from worldstereo.scenes import get_scene

    view = get_scene("room").start_view(256, 192)
    model = WorldStereo(WorldStereoConfig(width=256, height=192, fill="lama"))
    model.start(view.image, view.depth, view.camera)
    before = model.ggm.num_points
    steps = list(model.generate("orbit_right", num_frames=21))
    calls = model.generator.filler.calls
    big = sum(s.new_surface_mask.float().mean().item() >= fillmod.MIN_LAMA_SHARE for s in steps)
    assert 1 <= calls <= 8 and calls == big  # only frames revealing >= 5% new surface call the network
    # the look-ahead's points beyond the first filled frame's view are in the GGM
    first = next(s for s in steps if s.new_surface_mask.float().mean().item() >= fillmod.MIN_LAMA_SHARE)
    assert first.memory.points_added > int(first.new_surface_mask.sum())
    assert model.ggm.num_points > before
