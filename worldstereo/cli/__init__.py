"""The ``worldstereo`` command line: one module per command (:mod:`.generate`, :mod:`.scenes`,
:mod:`.panorama`, :mod:`.download`, :mod:`.eval`, :mod:`.world`, :mod:`.batch`, :mod:`.splats`), shared parts in :mod:`.common` and :mod:`.camera_files`.

Commands::

    worldstereo generate --image IMG [--depth D] (--camera FILE | --preset NAME) [--frames N] [--size WxH] [--out DIR]
    worldstereo generate --scene NAME (--camera FILE | --preset NAME) [--generator warp|oracle] ...
    worldstereo generate --example DIR [--frames N] ...
    worldstereo generate --panorama PANO_OR_BANK (--camera FILE | --preset NAME) ...
    worldstereo panorama split PANO --out DIR [--depth D]   # the official 27-view pano bank
    worldstereo world (--image I | --panorama P | --example E) [--plan plan.json] [--trajectories N] --out D
    worldstereo batch INPUTS... --out D [--preset NAME | --camera FILE] [--workers N] [--ray-address ADDR] [--no-ray]
    worldstereo splats export SRC --out FILE.ply|FILE.splat [--max-splats N]   # a world, a run or a snapshot
    worldstereo splats fit D [--iterations N]  # fit a world's splats on a CUDA GPU
    worldstereo scenes                         # list the procedural scenes
    worldstereo scenes render NAME --out DIR   # image.png, depth.png (16-bit mm), depth.npy, camera.json
    worldstereo download-weights [--device auto|cpu|cuda|all] [--generator vace]   # fill the Hugging Face cache for offline use

Outputs are described in :mod:`worldstereo.exports`. Bad input gives one line ``error: ...`` on stderr
and exit status 2 (``--debug`` or ``WORLDSTEREO_DEBUG=1`` shows the traceback); Ctrl-C gives status 130 and leaves no half-written file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from worldstereo.cli.common import EXIT_ERROR, CliError, Parser, debug_from_env, parse_size, run_command

if TYPE_CHECKING:
    from worldstereo.cli.camera_files import CameraFile, read_camera_file
    from worldstereo.trajectory import subsample

__all__ = ["CameraFile", "CliError", "build_parser", "debug_from_env", "main", "parse_size", "read_camera_file", "subsample"]

#: subcommand -> (module, the function adding its parser), in the order ``--help`` lists them; a module is imported
#: only when its parser is built (``worldstereo batch`` builds its own alone: a batch's driver needs no torch)
COMMANDS = {
    "generate": ("worldstereo.cli.generate", "add_generate_parser"),
    "scenes": ("worldstereo.cli.scenes", "add_scenes_parser"),
    "download-weights": ("worldstereo.cli.download", "add_download_parser"),
    "eval": ("worldstereo.cli.eval", "add_eval_parser"),
    "panorama": ("worldstereo.cli.panorama", "add_panorama_parser"),
    "world": ("worldstereo.cli.world", "add_world_parser"),
    "batch": ("worldstereo.cli.batch", "add_batch_parser"),
    "splats": ("worldstereo.cli.splats", "add_splats_parser"),
}
_LAZY = {"CameraFile": "worldstereo.cli.camera_files", "read_camera_file": "worldstereo.cli.camera_files",
         "subsample": "worldstereo.trajectory"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'worldstereo.cli' has no attribute {name!r}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``worldstereo`` parser: every subcommand, or only the one named ``only``."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")

    parser = Parser(prog="worldstereo", description="WorldStereo Explorer: camera-guided scene exploration with memory.")
    # its own action (parents share action objects, and a default set here would leak into the subcommands)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="{generate,world,batch,splats,scenes,panorama,eval,download-weights}")
    for name, (module, add) in COMMANDS.items():
        if only is None or name == only:
            getattr(importlib.import_module(module), add)(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    args_in = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser("batch" if args_in[:1] == ["batch"] else None)
    try:
        args = parser.parse_args(args_in)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (already printed)
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    return run_command(args)
