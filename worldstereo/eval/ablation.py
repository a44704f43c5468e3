"""The memory ablation: no memory vs +GGM vs +GGM+SSM on procedural scenes with ground truth.

For each scene, the model starts from the scene's start view (image, exact depth, camera) and
explores the four reference paths in the reference order (eloop, up, right, left) with one shared
memory; every config sees the same cameras. Each generated frame is scored against the oracle (the
scene's anti-aliased ground-truth render of the same camera):

* quality: PSNR / SSIM over the frame and inside the *revisited region* (pixels whose true surface
  point was visible in an earlier frame of the exploration: the input view or any previous frame);
* cross-path consistency: PSNR between a frame of one path and frames of the previous paths, where
  both see the same surface (ground-truth correspondence, :mod:`worldstereo.eval.visibility`);
* GGM reconstruction: precision / recall / F1 / AUC of the final point cloud against the true
  surface seen by the exploration (:mod:`worldstereo.eval.reconstruction`);
* camera following: RotErr / TransErr / ATE of poses recovered from the frames
  (:mod:`worldstereo.eval.camera_errors`);
* memory size over time and time per frame.

Entry points: :func:`run_eval` (library), :func:`add_eval_arguments` / :func:`eval_command` (CLI),
``python -m worldstereo.eval --quick --out DIR``.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.eval.ablation_results import (
    ABLATION_CONFIGS,
    AblationConfig,
    ConfigResult,
    EvalReport,
    EvalSettings,
    FrameRecord,
    ReferencePath,
    SceneResult,
    reference_paths,
)
from worldstereo.eval.camera_errors import CameraErrors, camera_following_errors
from worldstereo.eval.metrics import psnr, psnr_from_mse, ssim
from worldstereo.eval.reconstruction import reconstruction_curve
from worldstereo.eval.report import write_report
from worldstereo.eval.visibility import (
    correspondence,
    cross_view_error,
    revisited_masks,
    visible_in,
)

__all__ = [
    "ABLATION_CONFIGS",
    "AblationConfig",
    "ConfigResult",
    "EvalReport",
    "EvalSettings",
    "FrameRecord",
    "ReferencePath",
    "SceneResult",
    "add_eval_arguments",
    "eval_command",
    "reference_paths",
    "run_eval",
    "run_scene",
]


# ---------------------------------------------------------------------------------------------- one scene
@dataclass
class _Truth:
    """Ground truth of an exploration: index 0 is the input view, then every path frame in order."""

    cameras: CameraParameters
    images: torch.Tensor  # (T, 3, H, W)
    depths: torch.Tensor  # (T, 1, H, W)
    revisited: torch.Tensor  # (T, 1, H, W) bool
    path_slices: list[slice]


def _render_truth(scene, view, paths: list[ReferencePath], settings: EvalSettings, log: Callable[[str], None]) -> _Truth:
    cams = CameraParameters.cat([view.camera] + [p.cameras for p in paths])
    T = len(cams)
    images = torch.empty(T, 3, settings.height, settings.width)
    depths = torch.empty(T, 1, settings.height, settings.width)
    images[0], depths[0] = view.image[0], view.depth[0]
    # cameras equal to the start camera (every path's first frame, the eloop's last) reuse the start view
    w2c = cams.w2c
    t0 = time.perf_counter()
    for t in range(1, T):
        same = [s for s in range(t) if torch.allclose(w2c[s], w2c[t], atol=1e-6)]
        if same:
            images[t], depths[t] = images[same[0]], depths[same[0]]
            continue
        r = scene.render(cams[t], antialias=2)
        images[t], depths[t] = r.image[0], r.depth[0]
    log(f"  oracle: {T} frames in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    revisited = revisited_masks(cams, depths, settings.depth_tolerance)
    log(f"  revisited masks in {time.perf_counter() - t0:.1f} s")
    n = settings.frames_per_path
    slices = [slice(1 + i * n, 1 + (i + 1) * n) for i in range(len(paths))]
    return _Truth(cams, images, depths, revisited, slices)


def _seen_surface(scene, truth: _Truth, settings: EvalSettings) -> torch.Tensor:
    """(M, 3) true-surface samples visible in at least one camera of the exploration."""
    area = sum(p.area for p in scene.primitives)
    spacing = settings.surface_spacing * scene.scene_depth
    n = int(min(settings.max_surface_samples, max(10_000, area / spacing**2)))
    pts = scene.sample_surface(n, seed=settings.seed).points
    seen = torch.zeros(n, dtype=torch.bool)
    chunk = 8
    for s in range(0, len(truth.cameras), chunk):
        todo = ~seen
        if not bool(todo.any()):
            break
        e = min(s + chunk, len(truth.cameras))
        seen[todo] = visible_in(pts[todo], truth.cameras[s:e], truth.depths[s:e], settings.depth_tolerance).any(0)
    return pts[seen]


def _spaced(indices: list[int], k: int) -> list[int]:
    if len(indices) <= k:
        return indices
    pos = np.linspace(0, len(indices) - 1, k).round().astype(int)
    return [indices[i] for i in sorted(set(pos.tolist()))]


def _consistency_pairs(truth: _Truth, settings: EvalSettings) -> list[tuple[int, int]]:
    """(a, b) exploration indices: frames of each later path against reference frames of every earlier path."""
    pairs = []
    for p in range(1, len(truth.path_slices)):
        sl = truth.path_slices[p]
        frames_a = _spaced(list(range(sl.start + 1, sl.stop)), settings.consistency_frames)
        for q in range(p):
            sq = truth.path_slices[q]
            frames_b = _spaced(list(range(sq.start + 1, sq.stop)), settings.consistency_references)
            pairs += [(a, b) for a in frames_a for b in frames_b]
    return pairs


def _run_config(
    config: AblationConfig, view, paths: list[ReferencePath], truth: _Truth, settings: EvalSettings
) -> tuple[ConfigResult, torch.Tensor, object]:
    """Explore all paths with one arm; returns its result, the generated images (T, 3, H, W) and the model."""
    from worldstereo.model import WorldStereo, WorldStereoConfig

    torch.manual_seed(settings.seed)
    model = WorldStereo(
        # Telea fill: the ablation compares memories, and its figures must not depend on what a machine has cached
        WorldStereoConfig(width=settings.width, height=settings.height, use_ggm=config.use_ggm, use_ssm=config.use_ssm,
                          fill="telea")
    )
    model.start(view.image, view.depth, view.camera)
    generated = truth.images.clone()
    records: list[FrameRecord] = []
    t = 1
    for path in paths:
        for step in model.generate(path.cameras):
            img = step.image.float()
            generated[t] = img
            gt = truth.images[t]
            rev = truth.revisited[t, 0]
            has_rev = bool(rev.any())
            records.append(
                FrameRecord(
                    path=path.name,
                    frame_index=step.frame_index,
                    frame_id=step.frame_id,
                    psnr=psnr(img, gt),
                    ssim=ssim(img, gt),
                    psnr_revisited=psnr(img, gt, rev) if has_rev else float("nan"),
                    ssim_revisited=ssim(img, gt, rev) if has_rev else float("nan"),
                    revisited_fraction=float(rev.float().mean()),
                    ggm_points=step.memory.points_total,
                    ssm_entries=step.memory.ssm_entries,
                    ms=float(step.timings.get("total", float("nan"))),
                )
            )
            t += 1
    return ConfigResult(config, records), generated, model


def run_scene(
    name: str, settings: EvalSettings, log: Callable[[str], None] = lambda s: None
) -> SceneResult:
    """The whole ablation on one procedural scene (see the module docstring)."""
    from worldstereo.scenes import get_scene

    t_start = time.perf_counter()
    scene = get_scene(name, seed=settings.seed)
    view = scene.start_view(settings.width, settings.height, antialias=2)
    depth_scale = scene.scene_depth
    paths = reference_paths(view.camera, depth_scale, settings)
    log(f"scene {name}: depth {depth_scale:.2f}, {len(paths)} paths x {settings.frames_per_path} frames, "
        f"{settings.width}x{settings.height}")
    truth = _render_truth(scene, view, paths, settings, log)

    results, generated = [], []
    models = []
    for cfg in ABLATION_CONFIGS:
        t0 = time.perf_counter()
        res, gen, model = _run_config(cfg, view, paths, truth, settings)
        results.append(res)
        generated.append(gen)
        models.append(model)
        log(f"  {cfg.name}: PSNR {res.psnr:.2f} dB, revisited {res.psnr_revisited:.2f} dB "
            f"({time.perf_counter() - t0:.1f} s)")

    # cross-path consistency: one set of ground-truth correspondences, every arm (and the oracle) scored on it
    t0 = time.perf_counter()
    sse = np.zeros(len(results) + 1)
    count = 0
    for a, b in _consistency_pairs(truth, settings):
        corr = correspondence(truth.cameras[a], truth.depths[a], truth.cameras[b], truth.depths[b], settings.depth_tolerance)
        if corr.count == 0:
            continue
        for k, imgs in enumerate([*generated, truth.images]):
            e, n = cross_view_error(imgs[a], imgs[b], corr)
            sse[k] += e
        count += corr.count
    for k, res in enumerate(results):
        res.consistency_psnr = psnr_from_mse(sse[k] / (3 * count)) if count else float("nan")
        res.consistency_pixels = count
    oracle_consistency = psnr_from_mse(sse[-1] / (3 * count)) if count else float("nan")
    log(f"  consistency over {count} matched pixels in {time.perf_counter() - t0:.1f} s")

    # GGM reconstruction against the seen true surface
    t0 = time.perf_counter()
    surface = _seen_surface(scene, truth, settings)
    for res, model in zip(results, models, strict=True):
        res.tau = settings.tau * depth_scale
        # generated (filled) points are guesses: the reconstruction is scored on observed points only
        from worldstereo.model import OBSERVED_CONFIDENCE

        observed = model.ggm.point_cloud[model.ggm.point_confidence >= OBSERVED_CONFIDENCE]
        res.reconstruction = reconstruction_curve(observed, surface, settings.tau_max * depth_scale)
    log(f"  reconstruction vs {surface.shape[0]} surface samples in {time.perf_counter() - t0:.1f} s")

    oracle_camera = None
    if settings.camera_errors:
        t0 = time.perf_counter()
        for res, gen in zip(results, generated, strict=True):
            res.camera = CameraErrors.mean([camera_following_errors(gen[sl], truth.cameras[sl]) for sl in truth.path_slices])
        oracle_camera = CameraErrors.mean(
            [camera_following_errors(truth.images[sl], truth.cameras[sl]) for sl in truth.path_slices]
        )
        log(f"  camera errors in {time.perf_counter() - t0:.1f} s")
    return SceneResult(
        scene=name,
        scene_depth=depth_scale,
        paths=[p.name for p in paths],
        configs=results,
        oracle_consistency_psnr=oracle_consistency,
        oracle_camera=oracle_camera,
        surface_samples=int(surface.shape[0]),
        seconds=time.perf_counter() - t_start,
    )


# ---------------------------------------------------------------------------------------------- entry points
def run_eval(
    out_dir: str | Path | None,
    quick: bool = False,
    scenes: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    progress: bool = True,
    settings: EvalSettings | None = None,
) -> EvalReport:
    """Run the memory ablation and write the report (``report.md``, ``results.json``, charts) to ``out_dir``.

    Args:
        out_dir: report folder (created); None = do not write.
        quick: the reduced CI setting (:meth:`EvalSettings.quick_settings`).
        scenes: override the scenes.
        seed: scene / torch seed.
        progress: print progress to stderr.
        settings: full settings (overrides ``quick``; ``scenes`` and ``seed`` still apply when given).
    Returns:
        :class:`EvalReport`.
    """
    base = settings or (EvalSettings.quick_settings() if quick else EvalSettings())
    overrides: dict = {}
    if scenes:
        overrides["scenes"] = tuple(scenes)
    if seed != base.seed:
        overrides["seed"] = int(seed)
    settings = replace(base, **overrides) if overrides else base

    def log(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    results = [run_scene(name, settings, log) for name in settings.scenes]
    report = EvalReport(settings, results, time.perf_counter() - t0)
    if out_dir is not None:
        report.out_dir = Path(out_dir)
        report.files = write_report(report, report.out_dir)
        log(f"report: {report.out_dir / 'report.md'} ({report.seconds:.0f} s)")
    return report


def add_eval_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the ``worldstereo eval`` options to ``parser``."""
    parser.add_argument("--out", default=None, help="folder for report.md, results.json and the charts (required)")
    parser.add_argument("--quick", action="store_true", help="reduced setting: one scene (room), 8-frame paths at 256x192")
    parser.add_argument("--scenes", nargs="+", default=None, help="procedural scenes (default: room terrain tabletop)")
    parser.add_argument("--frames", type=int, default=None, help="frames per path (default 21, quick 8)")
    parser.add_argument("--size", default=None, help="working size WxH, multiples of 16 (default 512x384, quick 256x192)")
    parser.add_argument("--seed", type=int, default=0, help="scene and torch seed")
    parser.add_argument("--no-camera-errors", action="store_true", help="skip pose recovery from the frames")
    parser.add_argument("--quiet", action="store_true", help="no progress output")
    return parser


def eval_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo eval`` from parsed arguments; returns the exit status (0, or 2 for bad options)."""
    if not args.out:
        print("error: the ablation needs --out DIR (or run 'worldstereo eval fidelity EXAMPLE')", file=sys.stderr)
        return 2
    settings = EvalSettings.quick_settings() if args.quick else EvalSettings()
    overrides: dict = {"seed": args.seed}
    if args.scenes:
        overrides["scenes"] = tuple(args.scenes)
    if args.frames is not None:
        overrides["frames_per_path"] = args.frames
    if args.size:
        try:
            w, h = (int(x) for x in args.size.lower().split("x"))
        except ValueError:
            print(f"error: --size must look like 512x384, got {args.size!r}", file=sys.stderr)
            return 2
        overrides["width"], overrides["height"] = w, h
    if args.no_camera_errors:
        overrides["camera_errors"] = False
    try:
        settings = replace(settings, **overrides)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_eval(args.out, settings=settings, progress=not args.quiet)
    print(report.out_dir / "report.md")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m worldstereo.eval [--quick] --out DIR``."""
    from worldstereo.runtime import keep_freed_memory

    keep_freed_memory()
    parser = argparse.ArgumentParser(prog="worldstereo eval", description="memory ablation and evaluation report")
    return eval_command(add_eval_arguments(parser).parse_args(argv))
