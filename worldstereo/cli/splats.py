"""``worldstereo splats export SRC --out FILE.ply|FILE.splat`` and ``worldstereo splats fit D``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from worldstereo.cli.common import CliError, Parser, positive_int

__all__ = ["add_splats_parser"]


def add_splats_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``splats`` subcommand (``export``, ``fit``)."""
    from worldstereo.splats.surfels import DEFAULT_MAX_SPLATS

    p = sub.add_parser("splats", parents=[common], help="Gaussian splats of a world or a run: export, fit on a GPU",
                       description="Gaussian splats of the memories: one flat disc per GGM point (no training), "
                                   "as an INRIA .ply or a .splat; or fitted to a world's frames on a CUDA GPU.")
    psub = p.add_subparsers(dest="splats_command", parser_class=Parser, metavar="{export,fit}", required=True)
    e = psub.add_parser("export", parents=[common], help="write the splats of a world, a run or a snapshot",
                        description="Write the splats of SRC: a world folder (its memories after the last finished "
                                    "trajectory), a 'generate' output folder (its snapshot/), or a snapshot (a folder "
                                    "with state.json and state.safetensors, or the app's snapshot .zip).")
    e.add_argument("source", type=Path, metavar="SRC", help="world folder, 'generate' output folder or snapshot")
    e.add_argument("--out", type=Path, required=True, metavar="FILE",
                   help="FILE.ply (INRIA 3D Gaussian splatting) or FILE.splat (antimatter15)")
    e.add_argument("--max-splats", type=positive_int, default=DEFAULT_MAX_SPLATS, metavar="N",
                   help=f"splat budget (default {DEFAULT_MAX_SPLATS:,}); below the point count neighbours merge "
                        "into larger discs")
    e.add_argument("--quiet", action="store_true", help="no summary line")
    e.set_defaults(func=splats_export_command)
    f = psub.add_parser("fit", parents=[common], help="fit a world's splats to its frames (CUDA GPU)",
                        description="Optimise the splats of world folder D with gsplat's rasteriser on a CUDA GPU "
                                    "(L1 + D-SSIM on the images, L1 on known depth, gsplat's densify/prune); every "
                                    "8th frame is held out and scored before and after. Writes "
                                    "D/world/splats_fit.ply. Without CUDA or gsplat's kernels: one line and exit 2.")
    f.add_argument("world", type=Path, metavar="D", help="a world folder (worldstereo world --out D)")
    f.add_argument("--iterations", type=positive_int, default=7000, metavar="N", help="optimisation steps (default 7000)")
    f.add_argument("--max-splats", type=positive_int, default=DEFAULT_MAX_SPLATS, metavar="N",
                   help=f"budget of the starting splats (default {DEFAULT_MAX_SPLATS:,})")
    f.add_argument("--quiet", action="store_true", help="no progress bar")
    f.set_defaults(func=splats_fit_command)


def splats_export_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo splats export``."""
    from worldstereo.splats import SPLAT_FORMATS, write_splats
    from worldstereo.splats.sources import splats_from_source

    if args.out.suffix.lower() not in SPLAT_FORMATS:
        raise CliError(f"--out must end in {' or '.join(SPLAT_FORMATS)}, got {args.out.name!r}")
    if args.out.is_dir():
        raise CliError(f"--out {str(args.out)!r} is a folder; name a file")
    g, info = splats_from_source(args.source, args.max_splats)
    path = write_splats(g, args.out)
    if not args.quiet:
        merged = f" (points merged in voxels of {info.voxel:.4g} to fit the budget)" if info.voxel else ""
        print(f"{info.splats:,} splats from {info.points:,} points{merged}, median radius {info.median_radius:.4g} "
              f"-> {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    return 0


def splats_fit_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo splats fit``."""
    from worldstereo.splats.fit import FitUnavailableError, fit_splats, gsplat_kernels

    why = gsplat_kernels()
    if why is not None:
        raise CliError(why)
    try:
        r = fit_splats(args.world, args.iterations, args.max_splats, show_progress=not args.quiet)
    except FitUnavailableError as exc:
        raise CliError(str(exc)) from None
    print(f"held-out frames ({r.held_out}): PSNR {r.psnr_before:.2f} -> {r.psnr_after:.2f} dB, "
          f"SSIM {r.ssim_before:.3f} -> {r.ssim_after:.3f}; {r.iterations} iterations in {r.seconds:.1f} s "
          f"({r.iterations_per_second:.1f} it/s); {r.splats_before:,} -> {r.splats_after:,} splats -> {r.output}",
          file=sys.stdout)
    return 0
