"""``worldstereo eval fidelity``: how well the memories cover the official example paths.

For every path of an official example folder (``../shared/data/worldstereo-examples``):

* **blank frames** (GGM render more than 90% holes before generation) and the **mean hole share**,
  from the Step stream of a generation along the path (paths in the reference order, one shared
  memory, depth scaled to the camera file as the CLI does);
* for reconstruction-kind examples, the start point cloud rendered along each path (before any
  generation, as the reference renders were made) against the official ``render.mp4`` /
  ``render_mask.mp4``: **hole-mask IoU** (holes as the positive class) and **PSNR** where both
  renders show a point.

Working size: the example image's aspect at ``width`` pixels (multiples of 16), so nothing is
stretched.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from worldstereo.camera import CameraParameters
from worldstereo.eval.metrics import psnr
from worldstereo.pipeline import BLANK_HOLE_SHARE

__all__ = ["ExampleFidelity", "PathFidelity", "add_fidelity_arguments", "evaluate_example", "fidelity_command"]


@dataclass
class PathFidelity:
    """Figures of one path (see the module docstring); ``hole_share`` lists every frame's."""

    name: str
    frames: int
    blank_frames: int
    mean_hole_share: float
    max_hole_share_after_3: float
    hole_share: list[float]
    mask_iou: float | None = None
    render_psnr: float | None = None


@dataclass
class ExampleFidelity:
    """Figures of one example folder."""

    example: str
    kind: str
    size: tuple[int, int]
    depth: str
    scale_factor: float
    seconds: float
    paths: list[PathFidelity] = field(default_factory=list)


def working_size(image_w: int, image_h: int, width: int = 384) -> tuple[int, int]:
    """(W, H), multiples of 16, with the image's aspect and ``width`` pixels across."""
    w = max(16, int(round(width / 16)) * 16)
    h = max(16, int(round(w * image_h / image_w / 16)) * 16)
    return w, h


def _read_video(path: Path, size: tuple[int, int]) -> torch.Tensor:
    """(T, 3, H, W) float in [0, 1] at ``size`` (W, H), area-resampled."""
    import imageio.v3 as iio

    frames = torch.from_numpy(np.ascontiguousarray(iio.imread(path))).permute(0, 3, 1, 2).float() / 255.0
    return F.interpolate(frames, size=(size[1], size[0]), mode="area")


def _mask_iou(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    """IoU of two bool hole masks (1.0 when both are empty)."""
    union = (ours | theirs).sum().item()
    return 1.0 if union == 0 else (ours & theirs).sum().item() / union


def _render_start_cloud(model, cameras: CameraParameters, names_video: tuple[Path, Path]) -> tuple[float, float]:
    """Mean hole-mask IoU and mean PSNR (where both know) of the start cloud rendered along ``cameras``."""
    size = (model.config.width, model.config.height)
    video, mask = _read_video(names_video[0], size), _read_video(names_video[1], size)
    n = min(len(cameras), video.shape[0])
    ious, psnrs = [], []
    points, colors = model.ggm.point_cloud, model.ggm.point_colors
    for i in range(n):
        render = model.generator.render_points(points, colors, cameras[i])
        ours = render.hole_mask[0, 0]
        theirs = mask[i].mean(0) > 0.5  # white = hole
        ious.append(_mask_iou(ours, theirs))
        both = ~ours & ~theirs
        if int(both.sum()) > 0:
            psnrs.append(min(psnr(render.image[0], video[i], mask=both), 60.0))
    return float(np.mean(ious)), float(np.mean(psnrs)) if psnrs else math.nan


def evaluate_example(
    folder: str | Path,
    depth_backend: str = "auto",
    width: int = 384,
    frames: int | None = None,
    progress: bool = True,
) -> ExampleFidelity:
    """Run the fidelity figures of one example folder (see the module docstring).

    Args:
        folder: an official example folder (images or reconstruction kind).
        depth_backend: ``auto``, ``moge`` or ``prior``.
        width: working width in pixels (the height follows the image's aspect).
        frames: frames per path (evenly spaced poses; default every pose).
        progress: one line per path on stderr.
    """
    from worldstereo.formats import read_example_folder
    from worldstereo.model import WorldStereo, WorldStereoConfig
    from worldstereo.trajectory import subsample

    t0 = time.perf_counter()
    ex = read_example_folder(folder)
    img_h, img_w = ex.image.shape[:2]
    w, h = working_size(img_w, img_h, width)
    kind = ex.paths[0].info.kind
    paths = [(p.name, p.cameras) for p in ex.paths]
    if kind == "images":
        paths = [(n, CameraParameters(c.intrinsics, c.extrinsics, img_w, img_h)) for n, c in paths]
    paths = [(n, subsample(c, frames).resized(w, h)) for n, c in paths]
    model = WorldStereo(WorldStereoConfig(width=w, height=h, depth_backend=depth_backend, memory_size=32 * (w // 16) * (h // 16)))
    info = model.start(ex.image, camera=paths[0][1][0], align_to=paths[0][1])
    result = ExampleFidelity(str(Path(folder).name), kind, (w, h), info.depth_model, info.scale_factor, 0.0)

    start_renders: dict[str, tuple[float, float]] = {}
    if kind == "renders":
        for name, cams in paths:
            base = ex.root / "renders" / f"traj_{name}"
            videos = (base / "render.mp4", base / "render_mask.mp4")
            if videos[0].is_file() and videos[1].is_file():
                start_renders[name] = _render_start_cloud(model, cams, videos)

    for name, cams in paths:
        shares = [step.hole_share for step in model.generate(cams, len(cams))]
        shares_after = shares[1:]  # frame 0 is the input view
        iou, pv = start_renders.get(name, (None, None))
        pf = PathFidelity(
            name=name,
            frames=len(shares),
            blank_frames=sum(s > BLANK_HOLE_SHARE for s in shares_after),
            mean_hole_share=float(np.mean(shares_after)) if shares_after else 0.0,
            max_hole_share_after_3=float(max(shares[3:])) if len(shares) > 3 else 0.0,
            hole_share=[round(float(s), 4) for s in shares],
            mask_iou=iou,
            render_psnr=pv,
        )
        result.paths.append(pf)
        if progress:
            print(f"  {result.example}/{name}: {_row(pf)}", file=sys.stderr)
    result.seconds = time.perf_counter() - t0
    return result


def _row(p: PathFidelity) -> str:
    text = (f"{p.frames} frames, blank {p.blank_frames}, mean hole share {p.mean_hole_share:.3f}, "
            f"max after frame 3 {p.max_hole_share_after_3:.3f}")
    if p.mask_iou is not None:
        text += f", hole-mask IoU {p.mask_iou:.3f}, PSNR {p.render_psnr:.2f} dB"
    return text


def format_table(results: list[ExampleFidelity]) -> str:
    """A markdown table of the figures."""
    lines = [
        "| example | depth (scale) | path | frames | blank | mean hole share | max after 3 | hole-mask IoU | PSNR vs official |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        for p in r.paths:
            iou = f"{p.mask_iou:.3f}" if p.mask_iou is not None else "-"
            pv = f"{p.render_psnr:.2f} dB" if p.render_psnr is not None else "-"
            lines.append(
                f"| {r.example} | {r.depth} (x{r.scale_factor:.3g}) | {p.name} | {p.frames} | {p.blank_frames} | "
                f"{p.mean_hole_share:.3f} | {p.max_hole_share_after_3:.3f} | {iou} | {pv} |"
            )
    return "\n".join(lines)


def add_fidelity_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("examples", nargs="+", type=Path, metavar="EXAMPLE", help="official example folder(s)")
    parser.add_argument("--depth-backend", choices=("auto", "moge", "prior"), default="auto",
                        help="depth of the start image (default auto: MoGe-2 when it can be had, else the prior)")
    parser.add_argument("--width", type=int, default=384, help="working width in pixels (default 384)")
    parser.add_argument("--frames", type=int, default=None, help="frames per path (default: every pose)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    return parser


def fidelity_command(args: argparse.Namespace) -> int:
    """``worldstereo eval fidelity EXAMPLE...``: print the table (and write JSON); 0, or 2 on bad input."""
    for ex in args.examples:
        if not Path(ex).is_dir():
            print(f"error: example folder not found: {str(ex)!r}", file=sys.stderr)
            return 2
    if args.width < 16 or args.frames is not None and args.frames < 2:
        print("error: --width must be >= 16 and --frames >= 2", file=sys.stderr)
        return 2
    results = [evaluate_example(ex, args.depth_backend, args.width, args.frames, progress=not args.quiet)
               for ex in args.examples]
    print(format_table(results))
    if args.json is not None:
        from worldstereo.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps([asdict(r) for r in results], indent=1) + "\n")
    return 0
