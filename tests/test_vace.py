"""The ``vace`` generator with tiny random Wan2.1-VACE components built here (no download, CPU).

A spy around the real diffusers pipeline records what it receives: the control video must be the
GGM renders, the mask their (dilated) holes, the references the SSM's picks.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("transformers")

from worldstereo.backends import vace as vacemod  # noqa: E402
from worldstereo.backends.vace import VaceGenerator, align_depth, caption_from_prompt, snap_frames, snap_side  # noqa: E402
from worldstereo.model import WorldStereo, WorldStereoConfig  # noqa: E402
from worldstereo.scenes import get_scene  # noqa: E402

TEXT_DIM = 32
DATA = Path(__file__).resolve().parents[1] / "assets" / "examples"  # the official examples, shipped with the app


def tiny_text_parts():
    """A word-level tokenizer and a random 2-layer UMT5 encoder (d_model 32), built from local configs."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    words = ["<pad>", "</s>", "<unk>", "a", "room", "scene", "camera", "moving", "photorealistic", "seen", "by"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = UMT5Config(vocab_size=len(words), d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                        relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
    return tokenizer, UMT5EncoderModel(config).eval()


def tiny_vace_pipeline(text: bool = False):
    """WanVACEPipeline with random tiny components; with ``text``, a tiny tokenizer and text encoder
    too (else none: prompt embeddings are passed)."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanVACEPipeline, WanVACETransformer3DModel

    torch.manual_seed(0)
    vae = AutoencoderKLWan(base_dim=3, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1, temperal_downsample=[False, True, True])
    transformer = WanVACETransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=16, out_channels=16,
        text_dim=TEXT_DIM, freq_dim=256, ffn_dim=32, num_layers=3, cross_attn_norm=True,
        qk_norm="rms_norm_across_heads", rope_max_seq_len=32, vace_layers=[0, 2], vace_in_channels=96,
    )
    tokenizer, text_encoder = tiny_text_parts() if text else (None, None)
    return WanVACEPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                           transformer=transformer)


class Spy:
    """Calls the pipeline and keeps each call's keyword arguments and output frames."""

    def __init__(self, pipe):
        self.pipe = pipe
        self.calls: list[dict] = []

    def __call__(self, **kwargs):
        out = self.pipe(**kwargs)
        self.calls.append({**kwargs, "frames": out.frames[0].clone()})
        return out


def _generator(spy: Spy, **kw) -> VaceGenerator:
    g = torch.Generator().manual_seed(1)
    return VaceGenerator(
        pipeline=spy, force_cpu=True, num_inference_steps=2, clip_frames=5,
        prompt_embeds=torch.randn(1, 8, TEXT_DIM, generator=g), negative_prompt_embeds=torch.randn(1, 8, TEXT_DIM, generator=g),
        **kw,
    )


def _u8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1).permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


@pytest.fixture(scope="module")
def pipe():
    return tiny_vace_pipeline()


def test_vace_clip_receives_the_memories_and_keeps_known_pixels(pipe):
    view = get_scene("room").start_view(64, 48)
    spy = Spy(pipe)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, use_ssm=False, fill="telea"), generator=_generator(spy))
    model.start(view.image, view.depth, view.camera)
    points_before = model.ggm.num_points
    steps = list(model.generate("orbit_right", num_frames=6))

    # 6 frames = a clip of 4 new frames (+ the previous one: 5 = 4k + 1) and one of 2 (padded to 5)
    assert len(steps) == 6 and len(spy.calls) == 2
    assert [c["num_frames"] for c in spy.calls] == [5, 5] and all(len(c["video"]) == 5 for c in spy.calls)
    assert all((c["height"], c["width"]) == (48, 64) for c in spy.calls)
    for s in steps:
        assert s.image.shape == (3, 48, 64) and s.depth.shape == (1, 48, 64) and bool((s.depth > 0).all())

    first = spy.calls[0]
    # frame 0 of the control video is the input image (the last "generated" frame), kept whole
    assert np.array_equal(np.asarray(first["video"][0]), _u8(view.image[0] if view.image.ndim == 4 else view.image))
    assert not np.asarray(first["mask"][0]).any()
    for j in range(4):
        s = steps[j]
        assert np.array_equal(np.asarray(first["video"][1 + j]), _u8(s.ggm_render))  # control = the GGM render
        hole = s.ggm_hole_mask[0].numpy().astype(np.uint8)
        expected = cv2.dilate(hole, np.ones((5, 5), np.uint8)) > 0  # holes, dilated by 2 px (observed points only)
        mask = np.asarray(first["mask"][1 + j]) > 127
        assert np.array_equal(mask, expected)
        generated = first["frames"][1 + j].float().clamp(0, 1)
        m = torch.from_numpy(mask)
        assert torch.allclose(s.image[:, m], generated[:, m], atol=1e-6)  # the model fills the mask ...
        keep = ~m & ~s.ggm_hole_mask[0]
        assert torch.equal(s.image[:, keep], s.ggm_render[:, keep])  # ... and known pixels stay the memory's
    # the second clip starts from the last frame of the first
    assert np.array_equal(np.asarray(spy.calls[1]["video"][0]), _u8(steps[3].image))
    # the GGM grows from the generated frames, as generated (lower-confidence) points
    assert model.ggm.num_points > points_before and sum(s.memory.points_added for s in steps) > 0
    assert float(model.ggm.point_confidence.min()) < 0.5


def test_vace_references_are_the_ssm_picks(pipe):
    view = get_scene("room").start_view(64, 48)
    spy = Spy(pipe)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, fill="telea"), generator=_generator(spy))
    model.start(view.image, view.depth, view.camera)
    list(model.generate("orbit_right", num_frames=4))
    steps = list(model.generate("orbit_left", num_frames=4))
    gen = model.generator
    assert gen.references and all(s.references == gen.references for s in steps)
    refs = spy.calls[-1]["reference_images"]
    picked = gen.references[: vacemod.MAX_REFERENCES]
    assert len(refs) == len(picked)
    for ref, fid in zip(refs, picked, strict=True):
        assert np.array_equal(np.asarray(ref), _u8(model.keyframe_by_id(fid).image))
    assert steps[0].attention is not None  # the attention maps of the app still come with each frame


def test_vace_refuses_a_cpu_unless_forced_and_falls_back_without_weights(monkeypatch):
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        VaceGenerator(pipeline=object(), device="cpu")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        WorldStereo(WorldStereoConfig(generator="vace", fill="telea"))
    # on a CPU, auto is warp; with CUDA but no weights reachable (the Hub is off), warp with the reason
    model = WorldStereo(WorldStereoConfig(generator="auto", fill="telea"))
    assert model.generator.name == "warp" and "vace needs a CUDA GPU" in model.generator_message
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    import worldstereo.context

    monkeypatch.setattr(worldstereo.context, "resolve_device", lambda name: torch.device("cpu"))  # no real GPU for the memories
    vacemod._pipelines.clear()
    model = WorldStereo(WorldStereoConfig(generator="vace", fill="telea"))
    assert model.generator.name == "warp"
    assert "vace unavailable" in model.generator_message and "download-weights --generator vace" in model.generator_message


def test_pipeline_loads_through_from_pretrained_and_takes_a_text_prompt(tmp_path):
    pipe = tiny_vace_pipeline(text=True)
    pipe.save_pretrained(tmp_path / "tiny-vace")
    vacemod._pipelines.clear()
    loaded = vacemod.load_vace_pipeline(str(tmp_path / "tiny-vace"), device="cpu")
    assert loaded is vacemod.load_vace_pipeline(str(tmp_path / "tiny-vace"), device="cpu")  # once per process
    assert type(loaded).__name__ == "WanVACEPipeline" and loaded.transformer.dtype == torch.float32
    a = next(iter(pipe.transformer.state_dict().values()))
    b = next(iter(loaded.transformer.state_dict().values()))
    assert torch.equal(a, b)
    # the library path: a repo (here a folder) and a text prompt, through the model
    view = get_scene("room").start_view(64, 48)
    gen = VaceGenerator(repo=str(tmp_path / "tiny-vace"), device="cpu", force_cpu=True, prompt="a room seen by a moving camera",
                        num_inference_steps=1, guidance_scale=1.0, clip_frames=5)
    assert gen.pipeline is loaded
    model = WorldStereo(WorldStereoConfig(width=64, height=48, fill="telea"), generator=gen)
    model.start(view.image, view.depth, view.camera)
    steps = list(model.generate("orbit_right", num_frames=3))
    assert len(steps) == 3 and gen.calls == 1 and "Wan2.1-VACE" in model.generator_message
    vacemod._pipelines.clear()


def test_sizes_depth_alignment_and_captions():
    assert [snap_frames(n) for n in (1, 2, 5, 6, 21, 22)] == [1, 5, 5, 9, 21, 25]
    assert [snap_side(x) for x in (8, 384, 390, 500)] == [16, 384, 384, 496]
    est = torch.rand(1, 20, 30) + 0.5
    target = 2.5 * est + 0.3
    known = torch.rand(1, 20, 30) > 0.3
    out = align_depth(est, target, known)
    assert torch.allclose(out, target, atol=1e-4)  # recovers scale and shift, everywhere
    assert align_depth(torch.ones(1, 4, 4), target[:, :4, :4], torch.ones(1, 4, 4, dtype=torch.bool)) is None
    for folder in sorted(DATA.glob("*/*/prompt.json"))[:3]:
        caption = caption_from_prompt(json.loads(folder.read_text()))
        assert isinstance(caption, str) and len(caption) > 20
    assert caption_from_prompt({"short caption": "a room"}) == "a room" and caption_from_prompt({}) == ""


def test_cli_generates_an_example_with_vace_and_its_caption(tmp_path, monkeypatch, capsys):
    from worldstereo.cli import main

    pipe = tiny_vace_pipeline(text=True)
    pipe.save_pretrained(tmp_path / "tiny-vace")
    monkeypatch.setenv(vacemod.VACE_ENV, str(tmp_path / "tiny-vace"))
    vacemod._pipelines.clear()
    calls: list[dict] = []
    real_call = type(pipe).__call__

    def spy(self, *args, **kwargs):
        calls.append(kwargs)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(type(pipe), "__call__", spy)
    example = DATA / "images" / "photorealistic-indoor-dining_spaces-030"
    out = tmp_path / "run"
    rc = main(["generate", "--example", str(example), "--frames", "5", "--size", "64x48", "--out", str(out),
               "--generator", "vace", "--force-cpu", "--vace-steps", "1", "--depth-backend", "prior", "--fill", "telea"])
    assert rc == 0
    err = capsys.readouterr().err
    assert "generator: Wan2.1-VACE" in err
    caption = caption_from_prompt(json.loads((example / "prompt.json").read_text()))
    assert calls and all(c["prompt"] == caption for c in calls)  # the example's caption conditions the clip
    assert len(list((out / "frames").glob("*.png"))) == 5 and (out / "video.mp4").is_file()
    assert json.loads((out / "run.json").read_text())["config"]["prompt"] == caption
    vacemod._pipelines.clear()


def test_clip_call_runs_under_spaces_gpu_when_spaces_is_installed(pipe, monkeypatch):
    import sys
    import types

    used: list[int] = []

    def gpu(duration):
        def wrap(fn):
            def run(*args, **kwargs):
                used.append(duration)
                return fn(*args, **kwargs)

            return run

        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    view = get_scene("room").start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, use_ssm=False, fill="telea"), generator=_generator(Spy(pipe)))
    model.start(view.image, view.depth, view.camera)
    assert len(list(model.generate("orbit_right", num_frames=2))) == 2
    assert used == [vacemod.GPU_DURATION]  # one ZeroGPU allocation per clip


def test_the_clip_breakdown_accounts_for_the_time(pipe):
    from benchmarks.gpu_check import PARTS, clip_breakdown

    view = get_scene("room").start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, fill="telea"), generator=_generator(Spy(pipe)))
    model.start(view.image, view.depth, view.camera)
    t0 = time.perf_counter()
    steps = list(model.generate("orbit_right", num_frames=5))
    seconds = time.perf_counter() - t0
    parts = clip_breakdown(steps, seconds, extra_io_s=0.25)
    assert all(s.timings[k] >= 0 for s in steps for k in ("generate", "mask", "io", "depth", "render", "update"))
    assert parts["model"] > 0 and parts["render"] > 0 and parts["io"] >= 0.25
    assert parts["total"] == pytest.approx(seconds + 0.25, abs=1e-3)
    assert parts["outside model"] == pytest.approx(parts["total"] - parts["model"], abs=2e-3)
    # the parts are disjoint: together they never exceed the wall time, and leave little untimed
    named = sum(parts[name] for name in PARTS)
    assert named <= parts["total"] + 2e-3 and parts["other"] <= 0.5 * parts["total"]


class _BatchedDepth:
    """A learned-depth stand-in (named like MoGe, so generated frames ask it): a plane, counting its calls."""

    name = "moge"

    def __init__(self):
        self.batches: list[int] = []

    def estimate_depths(self, images):
        self.batches.append(images.shape[0])
        return torch.full((images.shape[0], 1, *images.shape[-2:]), 3.0)


def test_a_clip_asks_the_depth_model_once_for_all_its_frames(pipe):
    view = get_scene("room").start_view(64, 48)
    model = WorldStereo(WorldStereoConfig(width=64, height=48, use_ssm=False, fill="telea"), generator=_generator(Spy(pipe)))
    model.start(view.image, view.depth, view.camera)
    depth = _BatchedDepth()
    model.context.depth_estimator = depth
    steps = list(model.generate("orbit_right", num_frames=6))
    assert len(depth.batches) == 2 and depth.batches[0] <= 4  # one call per clip (4 new frames, then 2)
    for s in steps:
        known = ~s.ggm_hole_mask[0] & (s.depth[0] > 0)
        assert bool((s.depth > 0).all()) and bool(known.any())
