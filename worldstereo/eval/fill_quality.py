"""``worldstereo eval fill``: how well each hole filler fills what the memories do not know.

On the procedural scenes (exact start depth, ground truth for every camera) the ``warp``
generator runs along two orbits with each filler; inside each frame's disoccluded region (the
pixels no memory covered, ``Step.new_surface_mask``) it scores

* **PSNR** against the scene's ground-truth render, and
* **sharpness**: mean gradient magnitude of the frame there divided by the ground truth's
  (1.0 = as much detail as the truth; smears score far below).

``telea`` always runs; ``lama`` runs only where its weights are already in the Hugging Face cache
(nothing is downloaded here), else the table says it was skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from worldstereo.camera import CameraParameters
from worldstereo.eval.metrics import psnr

__all__ = ["FillScore", "add_fill_arguments", "evaluate_fills", "fill_command", "sharpness"]

PATHS = ("orbit_left", "orbit_right")


@dataclass
class FillScore:
    """Mean figures of one filler on one scene (``nan`` when no frame had a disocclusion)."""

    scene: str
    fill: str
    frames: int
    hole_share: float
    psnr: float
    sharpness: float
    calls: int
    seconds: float


def sharpness(image: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean gradient magnitude of ``image`` (3, H, W) over ``mask`` (H, W) bool (pixels whose both
    forward neighbours are inside too)."""
    g = image.float().mean(0)
    gx = (g[:, 1:] - g[:, :-1])[:-1]
    gy = (g[1:] - g[:-1])[:, :-1]
    m = mask[:-1, :-1] & mask[1:, :-1] & mask[:-1, 1:]
    if not bool(m.any()):
        return math.nan
    return float(torch.sqrt(gx**2 + gy**2)[m].mean())


def _lama_cached() -> bool:
    from worldstereo import hub
    from worldstereo.backends.fill import lama_source

    source = lama_source()
    return source.is_file() if isinstance(source, Path) else hub.cached_file(*source) is not None


def evaluate_fills(
    scenes: tuple[str, ...] = ("room", "terrain", "tabletop"),
    width: int = 256,
    height: int = 192,
    frames: int = 8,
    fills: tuple[str, ...] | None = None,
) -> tuple[list[FillScore], list[str]]:
    """Score each filler (default: telea, and lama when cached) on each scene.

    Returns:
        (scores, notes): one :class:`FillScore` per (scene, filler), and lines about skipped fillers.
    """
    from worldstereo.backends.fill import LamaFill, make_filler
    from worldstereo.backends.generators import FRAME_GENERATORS
    from worldstereo.model import WorldStereo, WorldStereoConfig
    from worldstereo.scenes import get_scene

    notes: list[str] = []
    if fills is None:
        fills = ("telea", "lama") if _lama_cached() else ("telea",)
        if len(fills) == 1:
            notes.append("lama skipped: its weights are not in the Hugging Face cache (`worldstereo download-weights`)")
    scores: list[FillScore] = []
    for name in scenes:
        scene = get_scene(name)
        view = scene.start_view(width, height)
        for fill in fills:
            filler = LamaFill(download=False, show_progress=False) if fill == "lama" else make_filler(fill)
            gen = FRAME_GENERATORS.create("warp", filler=filler)
            model = WorldStereo(WorldStereoConfig(width=width, height=height, fill=fill), generator=gen)
            model.start(view.image, view.depth, view.camera)
            shares, psnrs, sharp = [], [], []
            for path in PATHS:
                steps = list(model.generate(path, num_frames=frames))
                truth = scene.render(CameraParameters.cat([s.camera for s in steps])).image
                for s, t in zip(steps, truth, strict=True):
                    mask = s.new_surface_mask[0]
                    shares.append(float(mask.float().mean()))
                    if int(mask.sum()) < 16:
                        continue
                    psnrs.append(min(psnr(s.image, t, mask=mask), 60.0))
                    ours, ref = sharpness(s.image, mask), sharpness(t, mask)
                    if not math.isnan(ours) and ref > 0:
                        sharp.append(ours / ref)
            mean = lambda xs: float(sum(xs) / len(xs)) if xs else math.nan  # noqa: E731
            scores.append(FillScore(name, fill, len(shares), mean(shares), mean(psnrs), mean(sharp),
                                    filler.calls, filler.seconds))
    return scores, notes


def format_table(scores: list[FillScore]) -> str:
    lines = ["| scene | fill | frames | disoccluded share | PSNR there | sharpness vs truth | fill calls | fill s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for s in scores:
        lines.append(f"| {s.scene} | {s.fill} | {s.frames} | {s.hole_share:.3f} | {s.psnr:.2f} dB | "
                     f"{s.sharpness:.2f} | {s.calls} | {s.seconds:.2f} |")
    return "\n".join(lines)


def add_fill_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--scenes", nargs="+", default=["room", "terrain", "tabletop"], help="procedural scenes")
    parser.add_argument("--size", default="256x192", help="working size WxH, multiples of 16 (default 256x192)")
    parser.add_argument("--frames", type=int, default=8, help="frames per orbit (default 8)")
    parser.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    return parser


def fill_command(args: argparse.Namespace) -> int:
    """``worldstereo eval fill``: print the table; 0, or 2 on bad options."""
    from worldstereo.scenes import list_scenes

    try:
        w, h = (int(x) for x in str(args.size).lower().split("x"))
    except ValueError:
        print(f"error: --size must look like 256x192, got {args.size!r}", file=sys.stderr)
        return 2
    unknown = sorted(set(args.scenes) - set(list_scenes()))
    if unknown or w % 16 or h % 16 or w < 16 or h < 16 or args.frames < 2:
        print(f"error: bad options (unknown scenes {unknown}, size multiples of 16, frames >= 2)", file=sys.stderr)
        return 2
    scores, notes = evaluate_fills(tuple(args.scenes), w, h, args.frames)
    print(format_table(scores))
    for n in notes:
        print(f"note: {n}")
    if args.json:
        from worldstereo.atomic import write_text_atomic

        write_text_atomic(args.json, json.dumps([asdict(s) for s in scores], indent=1) + "\n")
    return 0
