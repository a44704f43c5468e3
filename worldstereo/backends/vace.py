"""``vace``: a learned video generator (Wan2.1-VACE through diffusers) conditioned on both memories.

Per clip of up to ``clip_frames`` frames (21 in the reference method, 4k + 1 for the model):

* **control video**: frame 0 is the last generated frame (the input image for the first clip),
  kept as it is; then, for each camera of the clip, the Global-Geometric Memory rendered into it;
* **mask** (what the model generates): the render's holes, dilated by ``mask_dilation`` pixels,
  plus pixels drawn from generated points only (lower confidence than observed ones);
* **reference images**: the Spatial-Stereo Memory's retrieved keyframes for the path
  (:func:`worldstereo.keyframes.select_reference_views`, the same picks as ``warp``);
* **prompt**: the example's caption (``prompt.json``) or the user's text.

Sizes are snapped to multiples of 16 for the model and the frames resized back. Known pixels are
kept from the memories (the warp decode: GGM render + SSM resampling) and the model's output only
replaces the mask, so its drift cannot undo memory consistency. Depth of generated pixels comes
from the depth backend, scale- and shift-aligned to the GGM render's depth on the known pixels
(least squares), or, when the backend is not a learned model, continued from the background side
of each hole. Frames then stream out one by one as with ``warp`` and enter both memories.

Weights come from the Hub through ``diffusers.from_pretrained`` (cache, progress; one load per
process): bf16 on CUDA, optional model CPU offload for small GPUs, ``torch.compile`` off by
default. On a CPU the generator refuses unless ``force_cpu`` (a clip would take hours). With the
``spaces`` package (a ZeroGPU Space) the clip call runs under ``@spaces.GPU(duration=...)``.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from worldstereo import hub
from worldstereo.backends.fill import NoFill
from worldstereo.backends.generators import FRAME_GENERATORS, FrameGenerator, FrameResult
from worldstereo.backends.warp import RESAMPLED_CONFIDENCE, WarpGenerator
from worldstereo.camera import CameraParameters
from worldstereo.geometry.holes import extend_depth_background
from worldstereo.records import SOURCE_MODEL, generated_confidence

if TYPE_CHECKING:
    from worldstereo.context import GenerationContext

#: the Hub repository of the weights (Apache-2.0, diffusers layout)
VACE_REPO = "Wan-AI/Wan2.1-VACE-1.3B-diffusers"
#: environment variable naming other weights: a Hub repo id or a local folder in diffusers layout
VACE_ENV = "WORLDSTEREO_VACE_MODEL"


def vace_source() -> str:
    """The weights to load: ``WORLDSTEREO_VACE_MODEL`` when set (repo id or folder), else :data:`VACE_REPO`."""
    return os.environ.get(VACE_ENV, "").strip() or VACE_REPO
#: frames per model call, the first being the previous frame (21 = 4 * 5 + 1, as in the reference)
CLIP_FRAMES = 21
#: the model's side multiple (VAE stride 8 x patch 2)
SIDE_MULTIPLE = 16
#: GGM points with a confidence below this (generated, not observed) are regenerated
UNCERTAIN_BELOW = 0.5
#: seconds asked of ZeroGPU per clip
GPU_DURATION = 180
DEFAULT_NEGATIVE = "blurry, low quality, distorted, static, watermark, text, jpeg artifacts, deformed, smeared"
#: references passed to the model, best first (each adds a latent frame; diffusers 0.42's mask
#: padding mis-sizes three or more at short clips, so two)
MAX_REFERENCES = 2

class GeneratorUnavailableError(ValueError):
    """The generator cannot run here (``vace`` on a CPU without ``force_cpu``)."""


_pipelines: dict[tuple[str, str, str, bool], Any] = {}
_pipelines_lock = threading.Lock()


def caption_from_prompt(prompt: dict[str, Any] | None) -> str:
    """The text prompt of an example's ``prompt.json``: ``prompt``, else a caption (medium, short, long), else ``""``."""
    if not prompt:
        return ""
    for key in ("prompt", "medium caption", "short caption", "long caption", "caption"):
        value = prompt.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return next((v.strip() for v in prompt.values() if isinstance(v, str) and v.strip()), "")


def snap_frames(n: int) -> int:
    """The least 4k + 1 >= n (Wan's VAE compresses time by 4)."""
    return 4 * max(0, -(-(n - 1) // 4)) + 1


def snap_side(x: int) -> int:
    """``x`` rounded to the nearest multiple of 16 (at least 16)."""
    return max(SIDE_MULTIPLE, int(round(x / SIDE_MULTIPLE)) * SIDE_MULTIPLE)


def resolve_vace_device(device: str | None) -> str:
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be auto, cpu or cuda, got {device!r}")
    return str(device)


def load_vace_pipeline(
    repo: str = VACE_REPO,
    device: str = "cuda",
    offload: bool = False,
    compile: bool = False,
    download: bool = True,
) -> Any:
    """``WanVACEPipeline.from_pretrained(repo)``, once per (repo, device, dtype, offload) in the process.

    bf16 on CUDA (the VAE in float32, as Wan recommends), float32 on a CPU. Progress bars are
    diffusers' own (tqdm).

    Raises:
        hub.WeightsUnavailableError: diffusers missing, offline with nothing cached, download failed.
    """
    try:
        from diffusers import AutoencoderKLWan, WanVACEPipeline
    except ImportError as err:
        raise hub.WeightsUnavailableError(
            f"the vace generator needs diffusers and transformers ({err}); `pip install diffusers transformers`",
            "package_missing",
        ) from err
    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    key = (repo, device, str(dtype), bool(offload))
    with _pipelines_lock:
        if key in _pipelines:
            return _pipelines[key]
        # a Hub that cannot be reached: what is cached still loads, without diffusers' retries
        unreachable = None if hub.hub_offline() or not download else hub.hub_unreachable()
        offline = hub.hub_offline() or not download or unreachable is not None
        _hub_online_now()
        try:
            vae = AutoencoderKLWan.from_pretrained(repo, subfolder="vae", torch_dtype=torch.float32, local_files_only=offline)
            pipe = WanVACEPipeline.from_pretrained(repo, vae=vae, torch_dtype=dtype, local_files_only=offline)
        except Exception as err:  # diffusers raises OSError/EnvironmentError/HTTP errors for all of these
            reason = "offline" if offline else "download_failed"
            if unreachable is not None:
                reason = "download_failed"
                hint = (f"not cached, and the Hub {unreachable}: run `worldstereo download-weights --generator vace` "
                        "where it can be reached")
            elif offline:
                hint = ("the Hub is switched off (HF_HUB_OFFLINE=1 or no download): run `worldstereo download-weights "
                        "--generator vace` where it can be reached")
            else:
                hint = f"could not get it from {hub.hub_endpoint()}; check the connection or HF_TOKEN"
            raise hub.WeightsUnavailableError(f"Wan2.1-VACE weights {repo!r} not available: {hint} ({hub._one_line(err)})",
                                              reason) from err
        if offload:
            pipe.enable_model_cpu_offload(device=device)
        else:
            pipe.to(device)
        if compile:
            pipe.transformer = torch.compile(pipe.transformer)
        pipe.set_progress_bar_config(disable=True)
        _pipelines[key] = pipe
        return pipe


def download_vace_weights(repo: str = VACE_REPO) -> Path:
    """Fetch the pipeline's files into the Hugging Face cache (what ``from_pretrained`` will read); returns the folder.

    Raises:
        hub.WeightsUnavailableError: diffusers missing, or the download failed.
    """
    try:
        from diffusers import WanVACEPipeline
    except ImportError as err:
        raise hub.WeightsUnavailableError(f"diffusers is not installed ({err})", "package_missing") from err
    _hub_online_now()
    try:
        return Path(WanVACEPipeline.download(repo))
    except Exception as err:
        raise hub.WeightsUnavailableError(
            f"could not download {repo} from {hub.hub_endpoint()} ({hub._one_line(err)})", "download_failed"
        ) from err


def _hub_online_now() -> None:
    """huggingface_hub reads HF_HUB_OFFLINE at import; follow the environment as it is now."""
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = hub.hub_offline()


def _on_gpu(fn: Any, duration: int) -> Any:
    """``spaces.GPU(duration=...)(fn)`` where the ``spaces`` package is installed (a no-op outside ZeroGPU)."""
    try:
        import spaces
    except ImportError:
        return fn
    return spaces.GPU(duration=duration)(fn)


@FRAME_GENERATORS.register("vace", "Wan2.1-VACE (diffusers) generates each clip from both memories (CUDA GPU)")
class VaceGenerator(FrameGenerator):
    """Learned clip generator; see the module docstring.

    Args:
        pipeline: a ready ``WanVACEPipeline`` (or anything called the same way); None = load ``repo``.
        repo: Hub repository or local folder of the weights; None = :func:`vace_source`.
        device: ``auto`` (CUDA when present), ``cuda`` or ``cpu``.
        force_cpu: allow a CPU (tests, tiny models); otherwise a CPU is refused.
        prompt, negative_prompt: text conditioning; or ``prompt_embeds`` / ``negative_prompt_embeds``
            (B, L, D) tensors passed to the pipeline as they are (then no text encoder is needed).
        num_inference_steps, guidance_scale, seed: sampling.
        clip_frames: frames per model call including the previous frame (snapped to 4k + 1).
        mask_dilation: pixels by which holes grow before they are generated (seams).
        offload: model CPU offload (small GPUs). compile: ``torch.compile`` the transformer.
        download: allow a Hub download (else the cache only).
    Raises:
        GeneratorUnavailableError: a CPU without ``force_cpu``.
        hub.WeightsUnavailableError: weights not had (the model falls back to ``warp``).
    """

    name = "vace"

    def __init__(
        self,
        pipeline: Any | None = None,
        repo: str | None = None,
        device: str | None = "auto",
        force_cpu: bool = False,
        prompt: str = "",
        negative_prompt: str = DEFAULT_NEGATIVE,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        num_inference_steps: int = 30,
        guidance_scale: float = 5.0,
        seed: int = 0,
        clip_frames: int = CLIP_FRAMES,
        mask_dilation: int = 2,
        offload: bool = False,
        compile: bool = False,
        download: bool = True,
    ) -> None:
        self.device = resolve_vace_device(device)
        if self.device == "cpu" and not force_cpu:
            raise GeneratorUnavailableError(
                "the vace generator needs a CUDA GPU (a 21-frame clip of Wan2.1-VACE-1.3B takes hours on a CPU); "
                "use --generator warp, or force it with force_cpu=True / --force-cpu"
            )
        if clip_frames < 5:
            raise ValueError(f"clip_frames must be at least 5, got {clip_frames}")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be positive, got {num_inference_steps}")
        repo = repo or vace_source()
        self.pipeline = pipeline if pipeline is not None else load_vace_pipeline(
            repo, self.device, offload=offload, compile=compile, download=download
        )
        self.repo = repo if pipeline is None else getattr(pipeline, "name_or_path", "given pipeline")
        self.prompt = prompt
        self.negative_prompt = negative_prompt
        self.prompt_embeds = prompt_embeds
        self.negative_prompt_embeds = negative_prompt_embeds
        self.num_inference_steps = int(num_inference_steps)
        self.guidance_scale = float(guidance_scale)
        self.seed = int(seed)
        self.clip_frames = snap_frames(int(clip_frames))
        self.mask_dilation = int(mask_dilation)
        self.message = f"Wan2.1-VACE ({self.repo}, {self.device}, {self.num_inference_steps} steps)"
        self._warp = WarpGenerator(filler=NoFill())
        self._cameras: CameraParameters | None = None
        self._frames: dict[int, FrameResult] = {}
        #: model calls made and seconds spent in them (like a filler's counters)
        self.calls = 0
        self.seconds = 0.0
        self._call = _on_gpu(self._run_pipeline, GPU_DURATION)

    # ------------------------------------------------------------------ per clip
    def begin_clip(self, ctx: GenerationContext, cameras: CameraParameters) -> None:
        self._warp.begin_clip(ctx, cameras)
        self._cameras = cameras
        self._frames = {}

    @property
    def references(self) -> list[int]:
        """Frame ids of the SSM keyframes retrieved for the current path."""
        return list(self._warp._references)

    def generate_frame(self, ctx: GenerationContext, camera: CameraParameters, index: int) -> FrameResult:
        if index not in self._frames:
            if self._cameras is None or index >= len(self._cameras):
                raise RuntimeError("generate_frame before begin_clip, or past the path's end")
            self._generate_clip(ctx, index)
        return self._frames.pop(index)

    # ------------------------------------------------------------------ one model call
    def _generate_clip(self, ctx: GenerationContext, start: int) -> None:
        assert self._cameras is not None
        t0 = time.perf_counter()
        n_new = min(self.clip_frames - 1, len(self._cameras) - start)
        total = snap_frames(n_new + 1)
        renders = [self._warp.generate_frame(ctx, self._cameras[start + j], start + j) for j in range(n_new)]
        h, w = self._cameras.height, self._cameras.width
        sh, sw = snap_side(h), snap_side(w)

        t_render = time.perf_counter()
        first = ctx.previous_frame_image()
        masks = [self._generation_mask(ctx, r) for r in renders]
        mask_ms = (time.perf_counter() - t_render) * 1e3
        video = [first] + [r.ggm_render for r in renders]
        mask_video = [torch.zeros(1, h, w, dtype=torch.bool)] + masks
        while len(video) < total:  # pad to 4k + 1 with the last frame (its outputs are dropped)
            video.append(video[-1])
            mask_video.append(mask_video[-1])
        refs = [ctx.keyframe_by_id(fid).image for fid in self.references[:MAX_REFERENCES]]
        t_io = time.perf_counter()
        inputs = ([_to_pil(_resize(v, sh, sw)) for v in video],
                  [_to_pil_mask(_resize(m.float(), sh, sw, "nearest") > 0.5) for m in mask_video],
                  [_to_pil(_resize(r, sh, sw)) for r in refs])
        t1 = time.perf_counter()
        io_ms = (t1 - t_io) * 1e3
        frames = self._call(*inputs, sh, sw, total)
        gen_seconds = time.perf_counter() - t1
        self.calls += 1
        self.seconds += gen_seconds
        if frames.shape[0] != total:
            raise RuntimeError(f"the pipeline returned {frames.shape[0]} frames, expected {total}")

        t_out = time.perf_counter()
        images = [torch.where(masks[j], _resize(frames[1 + j].float().clamp(0, 1), h, w), r.image)
                  for j, r in enumerate(renders)]
        out_ms = (time.perf_counter() - t_out) * 1e3
        t_est = time.perf_counter()
        estimates = self._estimate_depths(ctx, images, [m | r.new_surface_mask for m, r in zip(masks, renders, strict=True)])
        est_ms = (time.perf_counter() - t_est) * 1e3
        for j, r in enumerate(renders):
            mask, image = masks[j], images[j]
            t_depth = time.perf_counter()
            new = r.new_surface_mask
            depth, extended = self._depth_for(ctx, image, r.depth, mask | new, estimates[j])
            made = generated_confidence(SOURCE_MODEL, depth_guessed=bool(extended.any()))
            confidence = torch.where(mask, torch.full_like(depth, made), torch.full_like(depth, RESAMPLED_CONFIDENCE))
            source = torch.where(mask, torch.tensor(SOURCE_MODEL, dtype=torch.uint8), r.source_map())
            guessed = torch.where(mask, extended, r.depth_guessed if r.depth_guessed is not None else torch.zeros_like(mask))
            timings = dict(r.timings)
            # per frame: the clip's shared work divided among its frames
            timings["mask"] = mask_ms / n_new
            timings["io"] = (io_ms + out_ms) / n_new
            timings["depth"] = est_ms / n_new + (time.perf_counter() - t_depth) * 1e3
            timings["generate"] = gen_seconds * 1e3 / n_new
            timings["total_clip"] = (time.perf_counter() - t0) * 1e3 / n_new
            self._frames[start + j] = dataclasses.replace(
                r, image=image.clamp(0, 1), depth=depth, confidence=confidence, references=self.references, timings=timings,
                pixel_source=source, depth_guessed=guessed,
            )

    def _run_pipeline(self, video: list, mask: list, refs: list, height: int, width: int, num_frames: int) -> torch.Tensor:
        """One pipeline call -> (T, 3, height, width) float in [0, 1] (on the CPU)."""
        generator = torch.Generator(device="cpu").manual_seed(self.seed)
        kwargs: dict[str, Any] = dict(
            video=video, mask=mask, reference_images=refs or None, height=height, width=width,
            num_frames=num_frames, num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale, generator=generator, output_type="pt",
        )
        if self.prompt_embeds is not None:
            kwargs["prompt_embeds"] = self.prompt_embeds
            if self.negative_prompt_embeds is not None:
                kwargs["negative_prompt_embeds"] = self.negative_prompt_embeds
        else:
            kwargs["prompt"] = self.prompt or "a photorealistic scene, seen by a moving camera"
            kwargs["negative_prompt"] = self.negative_prompt
        out = self.pipeline(**kwargs)
        frames = out.frames[0] if hasattr(out, "frames") else out[0][0]
        frames = torch.as_tensor(np.asarray(frames)) if not isinstance(frames, torch.Tensor) else frames
        if frames.ndim == 4 and frames.shape[-1] == 3 and frames.shape[1] != 3:  # (T, H, W, 3) numpy layout
            frames = frames.permute(0, 3, 1, 2)
        return frames.detach().float().cpu()

    def _generation_mask(self, ctx: GenerationContext, render: FrameResult) -> torch.Tensor:
        """(1, H, W) bool: what the model generates: holes (dilated) and pixels of generated points only."""
        hole = render.ggm_hole_mask[0].numpy()
        uncertain = np.zeros_like(hole)
        ids = render.ggm_point_ids
        conf = getattr(ctx.ggm, "point_confidence", None)
        if ids is not None and conf is not None and conf.numel():
            valid = ids >= 0
            c = torch.ones(ids.shape)
            c[valid] = conf[ids[valid].to(conf.device)].float().cpu()  # the memory's device; the render's ids on the host
            uncertain = (c < UNCERTAIN_BELOW).numpy() & valid.numpy()
        mask = (hole | uncertain).astype(np.uint8)
        if self.mask_dilation > 0 and mask.any():
            k = 2 * self.mask_dilation + 1
            mask = cv2.dilate(mask, np.ones((k, k), np.uint8))
        return torch.from_numpy(mask.astype(bool)).unsqueeze(0)

    def _estimate_depths(self, ctx: GenerationContext, images: list[torch.Tensor], masks: list[torch.Tensor]
                         ) -> list[torch.Tensor | None]:
        """The depth backend's (1, H, W) depth of each frame that has pixels to fill, None for the others (or
        without a learned estimator); one batched call where the backend has one (MoGe-2)."""
        estimator = ctx.frame_depth_estimator()
        want = [j for j, m in enumerate(masks) if bool(m.any())]
        out: list[torch.Tensor | None] = [None] * len(images)
        if estimator is None or not want:
            return out
        if hasattr(estimator, "estimate_depths"):
            depths = estimator.estimate_depths(torch.stack([images[j] for j in want]))
            for j, d in zip(want, depths, strict=True):
                out[j] = d
        else:
            for j in want:
                out[j] = estimator.estimate(images[j].unsqueeze(0)).depth[0]
        return out

    def _depth_for(self, ctx: GenerationContext, image: torch.Tensor, render_depth: torch.Tensor, mask: torch.Tensor,
                   estimate: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(1, H, W) depth: the render's where known, the depth backend's ``estimate`` (aligned) in the mask;
        and (1, H, W) bool, True where it was extrapolated instead (no estimate: continued from the background)."""
        known = ~mask & (render_depth > 0)
        if not bool(mask.any()):
            return render_depth, torch.zeros_like(mask)
        if estimate is not None and int(known.sum()) >= 64:
            est = estimate.to(render_depth)
            aligned = align_depth(est, render_depth, known)
            if aligned is not None:
                return torch.where(known, render_depth, aligned), torch.zeros_like(mask)
        hole = ~known
        if bool(hole.all()):
            return torch.full_like(render_depth, float(ctx.scene_depth)), hole
        return extend_depth_background(torch.where(known, render_depth, torch.zeros_like(render_depth)), hole), hole


def align_depth(estimate: torch.Tensor, target: torch.Tensor, known: torch.Tensor) -> torch.Tensor | None:
    """``s * estimate + t`` fitted to ``target`` on ``known`` pixels by least squares (s > 0), or None.

    Args:
        estimate, target: (1, H, W) depth; known: (1, H, W) bool.
    Returns:
        (1, H, W) aligned depth (positive), or None when the fit is degenerate.
    """
    x = estimate[known].double()
    y = target[known].double()
    if x.numel() < 2 or float(x.std()) < 1e-9:
        return None
    A = torch.stack([x, torch.ones_like(x)], 1)
    sol = torch.linalg.lstsq(A, y.unsqueeze(1)).solution[:, 0]
    s, t = float(sol[0]), float(sol[1])
    if not np.isfinite(s) or s <= 0:
        s, t = float((y / x.clamp(min=1e-9)).median()), 0.0
    out = (s * estimate.double() + t).float()
    floor = 0.05 * float(y.median())
    return out.clamp(min=floor)


def _resize(x: torch.Tensor, h: int, w: int, mode: str = "bilinear") -> torch.Tensor:
    """(C, H, W) -> (C, h, w)."""
    if x.shape[-2:] == (h, w):
        return x
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(x.unsqueeze(0).float(), size=(h, w), mode=mode, **kw)[0]


def _to_pil(x: torch.Tensor) -> Any:
    from PIL import Image

    arr = (x.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255.0 + 0.5).astype(np.uint8)
    return Image.fromarray(arr, "RGB")


def _to_pil_mask(m: torch.Tensor) -> Any:
    from PIL import Image

    return Image.fromarray((m[0].cpu().numpy().astype(np.uint8) * 255), "L")
