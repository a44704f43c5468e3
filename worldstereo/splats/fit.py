"""Fit a world's splats on a GPU with gsplat's rasteriser (``worldstereo splats fit D``).

Start: the splats of the world's memories (:mod:`worldstereo.splats.surfels`). Data: the world's dataset
(``D/world``: ``transforms.json``, ``images/``, ``depths/``), every 8th frame held out (frames 0, 8, 16, ...).
Loss per training view: ``0.8 L1 + 0.2 (1 - SSIM)`` on the image, plus ``DEPTH_WEIGHT`` times the L1 of the
expected depth where the depth file knows it (relative to the scene depth). gsplat's ``DefaultStrategy``
densifies and prunes (its defaults: refine from step 500, every 100 steps, opacity reset every 3000). The
learning rates are gsplat's ``simple_trainer`` defaults, the means' scaled by the scene's extent. Before and
after, it reports PSNR and SSIM on the held-out frames; the result goes to ``D/world/splats_fit.ply``.

It needs CUDA and gsplat's CUDA kernels: gsplat's PyPI wheel carries none and builds them on first use with
the CUDA toolkit (``nvcc``, minutes, cached in ``~/.cache/torch_extensions``); gsplat's prebuilt wheels
(``pip install gsplat --index-url https://docs.gsplat.studio/whl/pt<torch>cu<cuda>``) load at once.
:func:`gsplat_kernels` says why they cannot be had.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from worldstereo.eval.metrics import psnr, ssim_map
from worldstereo.splats.files import write_splats
from worldstereo.splats.gaussians import Gaussians
from worldstereo.splats.sources import splats_from_source
from worldstereo.world.dataset import DEPTH_UNIT, DatasetFrame, read_dataset

__all__ = ["DEPTH_WEIGHT", "HOLDOUT_EVERY", "FitReport", "fit_splats", "gsplat_kernels"]

HOLDOUT_EVERY = 8
DEPTH_WEIGHT = 0.1
SSIM_WEIGHT = 0.2


class FitUnavailableError(RuntimeError):
    """No CUDA device, or gsplat's CUDA kernels cannot be loaded or built."""


def gsplat_kernels() -> str | None:
    """None when gsplat's CUDA rasteriser can run here, else one line saying why not."""
    if not torch.cuda.is_available():
        return "splats fit needs a CUDA GPU and torch sees none (this torch build: " + \
            ("CPU only" if torch.version.cuda is None else f"CUDA {torch.version.cuda}") + ")"
    try:
        from gsplat.cuda import _backend
    except Exception as exc:  # noqa: BLE001 - a failed JIT build raises many kinds
        return f"gsplat's CUDA kernels could not be built: {str(exc).splitlines()[0][:200]}"
    if _backend._C is None:
        return ("gsplat's CUDA kernels are not available: its wheel has none prebuilt and no CUDA toolkit (nvcc, "
                "CUDA_HOME) was found to build them; install the toolkit or a prebuilt gsplat wheel")
    return None


@dataclass
class FitReport:
    """Held-out PSNR / SSIM before and after, iterations, seconds, the splats before and after, the output file."""

    psnr_before: float
    psnr_after: float
    ssim_before: float
    ssim_after: float
    iterations: int
    seconds: float
    splats_before: int
    splats_after: int
    held_out: int
    output: Path

    @property
    def iterations_per_second(self) -> float:
        return self.iterations / max(self.seconds, 1e-9)


@dataclass
class _View:
    image: torch.Tensor  # (H, W, 3) float in [0, 1]
    depth: torch.Tensor  # (H, W), 0 = unknown
    viewmat: torch.Tensor  # (4, 4) world-to-camera
    K: torch.Tensor  # (3, 3)
    width: int
    height: int


def _load_views(frames: list[DatasetFrame], device: torch.device) -> list[_View]:
    from PIL import Image

    out = []
    for f in frames:
        with Image.open(f.image_path) as im:
            image = torch.from_numpy(np.asarray(im.convert("RGB"), np.float32) / 255.0)
        depth = torch.zeros(image.shape[:2])
        if f.depth_path is not None and f.depth_path.is_file():
            with Image.open(f.depth_path) as im:
                depth = torch.from_numpy(np.asarray(im, np.float32) * DEPTH_UNIT)
        out.append(_View(image.to(device), depth.to(device), f.camera.w2c[0].float().to(device),
                         f.camera.K[0].float().to(device), f.camera.width, f.camera.height))
    return out


def _render(params: dict[str, torch.Tensor], v: _View) -> tuple[torch.Tensor, torch.Tensor, dict]:
    from gsplat import rasterization

    colors = torch.cat([params["sh0"], params["shN"]], dim=1)
    out, alpha, info = rasterization(params["means"], params["quats"], params["scales"].exp(),
                                     torch.sigmoid(params["opacities"]), colors, v.viewmat[None], v.K[None],
                                     v.width, v.height, sh_degree=0, render_mode="RGB+ED", packed=False)
    return out[0, ..., :3].clamp(0, 1), out[0, ..., 3], info


@torch.no_grad()
def _evaluate(params: dict[str, torch.Tensor], views: list[_View]) -> tuple[float, float]:
    ps, ss = [], []
    for v in views:
        rgb, _, _ = _render(params, v)
        a, b = rgb.permute(2, 0, 1), v.image.permute(2, 0, 1)
        ps.append(psnr(a, b))
        ss.append(float(ssim_map(a, b).mean()))
    return float(np.mean(ps)), float(np.mean(ss))


def fit_splats(world: str | os.PathLike, iterations: int = 7000, max_splats: int = 2_000_000,
               progress: Callable[[int], None] | None = None, show_progress: bool = True) -> FitReport:
    """Fit the splats of the world folder ``world`` (module docstring) and write ``world/world/splats_fit.ply``.

    Raises:
        FitUnavailableError: no CUDA, or no gsplat kernels (:func:`gsplat_kernels`).
        ValueError: not a world folder, or a dataset too small to hold frames out.
    """
    import time

    from gsplat.strategy import DefaultStrategy
    from tqdm import tqdm

    why = gsplat_kernels()
    if why is not None:
        raise FitUnavailableError(why)
    if iterations < 1:
        raise ValueError(f"--iterations must be at least 1, got {iterations}")
    root = Path(world)
    frames = read_dataset(root / "world")
    if len(frames) < 2:
        raise ValueError(f"{root}: {len(frames)} frame(s): too few to hold every {HOLDOUT_EVERY}th out")
    device = torch.device("cuda")
    g, _ = splats_from_source(root, max_splats)
    test = [f for i, f in enumerate(frames) if i % HOLDOUT_EVERY == 0]
    train = [f for i, f in enumerate(frames) if i % HOLDOUT_EVERY != 0]
    train_views, test_views = _load_views(train, device), _load_views(test, device)
    extent = float((g.means.max(0).values - g.means.min(0).values).norm()) or 1.0
    depth_scale = float(np.median([float(v.depth[v.depth > 0].median()) for v in train_views if (v.depth > 0).any()]
                                  or [1.0]))
    params = {
        "means": torch.nn.Parameter(g.means.to(device)),
        "scales": torch.nn.Parameter(g.log_scales.to(device)),
        "quats": torch.nn.Parameter(g.quats.to(device)),
        "opacities": torch.nn.Parameter(g.opacity_logits.to(device)),
        "sh0": torch.nn.Parameter(g.sh0.to(device)[:, None, :]),
        "shN": torch.nn.Parameter(torch.zeros(len(g), 0, 3, device=device)),
    }
    lrs = {"means": 1.6e-4 * extent, "scales": 5e-3, "quats": 1e-3, "opacities": 5e-2, "sh0": 2.5e-3, "shN": 2.5e-3 / 20}
    optimizers = {k: torch.optim.Adam([{"params": params[k], "lr": lr, "name": k}], eps=1e-15) for k, lr in lrs.items()}
    means_decay = torch.optim.lr_scheduler.ExponentialLR(optimizers["means"], gamma=0.01 ** (1.0 / iterations))
    strategy = DefaultStrategy(verbose=False)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=extent / 2)
    psnr_before, ssim_before = _evaluate(params, test_views)
    n_before = len(g)
    order = np.random.default_rng(0)
    t0 = time.perf_counter()
    bar = tqdm(total=iterations, desc="fit", unit="it", disable=not show_progress, dynamic_ncols=True)
    for step in range(iterations):
        v = train_views[int(order.integers(len(train_views)))]
        rgb, depth, info = _render(params, v)
        strategy.step_pre_backward(params, optimizers, state, step, info)
        a, b = rgb.permute(2, 0, 1)[None], v.image.permute(2, 0, 1)[None]
        loss = (1 - SSIM_WEIGHT) * (rgb - v.image).abs().mean() + SSIM_WEIGHT * (1 - ssim_map(a, b).mean().float())
        known = v.depth > 0
        if bool(known.any()):
            loss = loss + DEPTH_WEIGHT * ((depth - v.depth).abs()[known].mean() / depth_scale)
        loss.backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        means_decay.step()
        strategy.step_post_backward(params, optimizers, state, step, info, packed=False)
        bar.update(1)
        if progress is not None:
            progress(step + 1)
    bar.close()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    psnr_after, ssim_after = _evaluate(params, test_views)
    q = torch.nn.functional.normalize(params["quats"].detach(), dim=1)
    fitted = Gaussians(params["means"].detach().cpu(), params["scales"].detach().cpu(), q.cpu(),
                       params["opacities"].detach().cpu(), params["sh0"].detach()[:, 0].cpu())
    out = write_splats(fitted, root / "world" / "splats_fit.ply")
    return FitReport(psnr_before, psnr_after, ssim_before, ssim_after, iterations, seconds, n_before, len(fitted),
                     len(test_views), out)
