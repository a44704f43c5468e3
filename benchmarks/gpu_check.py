"""GPU check of the ``vace`` generator, for a machine with CUDA (run: ``bash benchmarks/gpu_check.sh``).

With Wan2.1-VACE's weights in the Hugging Face cache it generates one 21-frame clip of a real
example from ``../shared/data`` (its first official path) and prints the seconds per clip and the
peak GPU memory, and writes the video. Without the weights it runs the tiny random pipeline of the
tests on CUDA, so that the CUDA paths (bf16, device placement, the memories on the GPU's frames)
are exercised anyway. The memories live on the GPU (``device`` auto).

Prints where a clip's seconds go (:func:`clip_breakdown`): the model, the renders (GGM splat, SSM
attention and decode, generation masks), the memory updates, depth, and I/O (tensor <-> image
conversions, resizes, the video file), and what is left; then one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT.parent / "shared" / "data" / "worldstereo-examples"


def _weights_cached(repo: str) -> bool:
    try:
        from huggingface_hub import snapshot_download

        snapshot_download(repo, local_files_only=True)
        return True
    except Exception:
        return False


#: Step timing keys of each part (milliseconds per frame)
PARTS = {"model": ("generate",), "render": ("render", "ssm", "inpaint", "mask"), "memory update": ("update",),
         "depth": ("depth",), "io": ("io",)}


def clip_breakdown(steps: list, seconds: float, extra_io_s: float = 0.0) -> dict[str, float]:
    """Seconds of a clip per part (:data:`PARTS`) from its Steps' timings, ``outside model`` (all but the
    model) and ``other`` (what no part timed); ``extra_io_s`` adds I/O timed outside the Steps (the video)."""
    out = {name: sum(s.timings.get(k, 0.0) for s in steps for k in keys) / 1e3 for name, keys in PARTS.items()}
    out["io"] += extra_io_s
    total = seconds + extra_io_s
    out["outside model"] = total - out["model"]
    out["other"] = total - sum(out[name] for name in PARTS)
    out["total"] = total
    return {k: round(v, 3) for k, v in out.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--example", type=Path, default=EXAMPLES / "images" / "photorealistic-outdoor-verdant_landscape-050")
    parser.add_argument("--out", type=Path, default=Path("gpu_check_out"))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", default="512x384")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to check here", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from worldstereo.backends.vace import VACE_REPO, VaceGenerator, caption_from_prompt
    from worldstereo.exports import write_video
    from worldstereo.formats import read_example_folder
    from worldstereo.model import WorldStereo, WorldStereoConfig

    w, h = (int(v) for v in args.size.split("x"))
    real = _weights_cached(VACE_REPO)
    ex = read_example_folder(args.example)
    if real:
        gen = VaceGenerator(prompt=caption_from_prompt(ex.prompt), num_inference_steps=args.steps)
    else:
        from tests.test_vace import TEXT_DIM, tiny_vace_pipeline

        pipe = tiny_vace_pipeline().to("cuda", torch.bfloat16)
        pipe.vae.to(torch.float32)
        g = torch.Generator().manual_seed(0)
        gen = VaceGenerator(pipeline=pipe, num_inference_steps=2, device="cuda",
                            prompt_embeds=torch.randn(1, 8, TEXT_DIM, generator=g).to("cuda", torch.bfloat16),
                            negative_prompt_embeds=torch.randn(1, 8, TEXT_DIM, generator=g).to("cuda", torch.bfloat16))
    model = WorldStereo(WorldStereoConfig(width=w, height=h, depth_backend="auto"), generator=gen)
    path = ex.paths[0]
    cams = path.cameras
    if path.info.kind == "images":
        from worldstereo.camera import CameraParameters

        cams = CameraParameters(cams.intrinsics, cams.extrinsics, ex.image.shape[1], ex.image.shape[0])
    idx = torch.linspace(0, len(cams) - 1, 21).round().long().tolist()
    cams = cams[idx]
    info = model.start(ex.image, camera=cams[0], align_to=cams)
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    steps = list(model.generate(cams, len(cams)))
    seconds = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    video = args.out / "vace_clip.mp4"
    t_io = time.perf_counter()
    write_video(video, [(s.image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype("uint8") for s in steps], fps=8)
    parts = clip_breakdown(steps, seconds, time.perf_counter() - t_io)
    print("| part | seconds per clip |\n|---|---:|")
    for name, value in parts.items():
        print(f"| {name} | {value:.2f} |")
    result = {
        "weights": VACE_REPO if real else "tiny random (no weights cached)",
        "device": torch.cuda.get_device_name(0),
        "frames": len(steps),
        "size": f"{w}x{h}",
        "seconds_per_clip": round(seconds, 2),
        "model_calls": gen.calls,
        "seconds_in_model": round(gen.seconds, 2),
        "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1),
        "depth": info.depth_model,
        "mean_hole_share": round(sum(s.hole_share for s in steps) / len(steps), 3),
        "video": str(video),
        "memory_device": str(model.ggm.point_cloud.device),
        "breakdown_s": parts,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
