"""The ``worldstereo`` command line: one module per command (:mod:`.generate`, :mod:`.scenes`,
:mod:`.panorama`, :mod:`.download`, :mod:`.eval`), shared parts in :mod:`.common` and :mod:`.camera_files`.

Commands::

    worldstereo generate --image IMG [--depth D] (--camera FILE | --preset NAME) [--frames N] [--size WxH] [--out DIR]
    worldstereo generate --scene NAME (--camera FILE | --preset NAME) [--generator warp|oracle] ...
    worldstereo generate --example DIR [--frames N] ...
    worldstereo generate --panorama PANO_OR_BANK (--camera FILE | --preset NAME) ...
    worldstereo panorama split PANO --out DIR [--depth D]   # the official 27-view pano bank
    worldstereo world (--image I | --panorama P | --example E) [--plan plan.json] [--trajectories N] --out D
    worldstereo scenes                         # list the procedural scenes
    worldstereo scenes render NAME --out DIR   # image.png, depth.png (16-bit mm), depth.npy, camera.json
    worldstereo download-weights [--device auto|cpu|cuda|all] [--generator vace]   # fill the Hugging Face cache for offline use

Outputs are described in :mod:`worldstereo.exports`. Bad input gives one line ``error: ...`` on stderr
and exit status 2 (``--debug`` or ``WORLDSTEREO_DEBUG=1`` shows the traceback); Ctrl-C gives status 130 and leaves no half-written file.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from worldstereo.cli.camera_files import CameraFile, read_camera_file
from worldstereo.cli.common import EXIT_ERROR, EXIT_INTERRUPTED, CliError, Parser, parse_size
from worldstereo.cli.download import add_download_parser
from worldstereo.cli.eval import add_eval_parser
from worldstereo.cli.generate import add_generate_parser
from worldstereo.cli.panorama import add_panorama_parser
from worldstereo.cli.scenes import add_scenes_parser
from worldstereo.cli.world import add_world_parser
from worldstereo.trajectory import subsample

__all__ = ["CameraFile", "CliError", "build_parser", "main", "parse_size", "read_camera_file", "subsample"]


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")

    parser = Parser(prog="worldstereo", description="WorldStereo Explorer: camera-guided scene exploration with memory.")
    # its own action (parents share action objects, and a default set here would leak into the subcommands)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", parser_class=Parser, metavar="{generate,world,scenes,panorama,eval,download-weights}")
    add_generate_parser(sub, common)
    add_scenes_parser(sub, common)
    add_download_parser(sub, common)
    add_eval_parser(sub, common)
    add_panorama_parser(sub, common)
    add_world_parser(sub, common)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    from worldstereo.hub import WeightsUnavailableError

    return (ValueError, OSError, WeightsUnavailableError)


def debug_from_env() -> bool:
    """``WORLDSTEREO_DEBUG=1`` (or true/yes/on): tracebacks on errors, like ``--debug``."""
    return os.environ.get("WORLDSTEREO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 2 bad input, 130 interrupted)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (already printed)
        return int(exc.code or 0)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    args.debug = bool(getattr(args, "debug", False)) or debug_from_env()
    from worldstereo.runtime import keep_freed_memory, warm_up

    keep_freed_memory()  # per-frame temporaries reuse freed pages (see worldstereo.runtime)
    if args.command in ("generate", "eval"):
        warm_up()  # the merge kernels compile (or load) while depth and the first frame are computed
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        if args.debug:
            traceback.print_exc()
        print("interrupted: no file was left half-written; frames written so far are complete", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _user_errors() as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR

