"""What every ``worldstereo`` command shares: exit codes, the one-line error, argument types, notes."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import traceback
from pathlib import Path

__all__ = [
    "CliError",
    "Parser",
    "add_rerun_argument",
    "check_rerun_argument",
    "debug_from_env",
    "note",
    "parse_size",
    "positive_float",
    "positive_int",
    "run_command",
    "write_rerun",
]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
SIZE_MULTIPLE = 16
MAX_SIDE = 4096
DEFAULT_OUT = "worldstereo-output"


class CliError(ValueError):
    """A user error with a message ready to print."""


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(EXIT_ERROR, f"error: {message} (see '{self.prog} --help')\n")


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` -> (width, height); both multiples of 16 in [16, 4096]."""
    m = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if m is None:
        raise argparse.ArgumentTypeError(f"--size must look like WIDTHxHEIGHT (e.g. 512x384), got {text!r}")
    w, h = int(m.group(1)), int(m.group(2))
    for name, v in (("width", w), ("height", h)):
        if v < SIZE_MULTIPLE or v > MAX_SIDE or v % SIZE_MULTIPLE:
            raise argparse.ArgumentTypeError(
                f"--size {name} must be a multiple of {SIZE_MULTIPLE} between {SIZE_MULTIPLE} and {MAX_SIDE}, got {v}"
            )
    return w, h


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def note(args: argparse.Namespace, text: str) -> None:
    """A ``note: ...`` line on stderr unless ``--quiet``."""
    if not args.quiet:
        print(f"note: {text}", file=sys.stderr)


def _user_errors() -> tuple[type[BaseException], ...]:
    from worldstereo.hub import WeightsUnavailableError

    return (ValueError, OSError, WeightsUnavailableError)


def debug_from_env() -> bool:
    """``WORLDSTEREO_DEBUG=1`` (or true/yes/on): tracebacks on errors, like ``--debug``."""
    return os.environ.get("WORLDSTEREO_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed command (``args.func``): one ``error: ...`` line and 2 for bad input, 130 for Ctrl-C."""
    args.debug = bool(getattr(args, "debug", False)) or debug_from_env()
    from worldstereo.runtime import keep_freed_memory, warm_up
    from worldstereo.threads import configure_process

    try:
        configure_process()  # one thread budget for torch, numba, OpenCV, ONNX Runtime and BLAS (worldstereo.threads)
    except ValueError as exc:  # a bad WORLDSTEREO_THREADS
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    keep_freed_memory()  # per-frame temporaries reuse freed pages (see worldstereo.runtime)
    if args.command in ("generate", "eval"):
        warm_up()  # the merge kernels compile (or load) while depth and the first frame are computed
    if args.command in ("generate", "eval", "world"):
        from worldstereo.hub import probe_in_background

        probe_in_background()  # whether the Hub answers, found while inputs are read (not when weights are wanted)
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


def device_name(text: str) -> str:
    """argparse type of ``--device``: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``."""
    from worldstereo.devices import check_device_name

    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_device_argument(parser: argparse.ArgumentParser) -> None:
    """``--device``: where the memories, their renders and the models run (``WorldStereoConfig.device``)."""
    parser.add_argument("--device", type=device_name, default="auto", metavar="auto|cpu|cuda[:N]",
                        help="device of the memories, renders and models: auto (default: CUDA where present, the "
                             "CPU on a ZeroGPU Space's host), cpu, cuda or cuda:N")


def add_rerun_argument(parser: argparse.ArgumentParser) -> None:
    """``--rerun FILE.rrd`` (shared by ``generate`` and ``world``)."""
    parser.add_argument("--rerun", type=Path, default=None, metavar="FILE.rrd",
                        help="also write a rerun recording of the memories frame by frame (open: rerun FILE.rrd; "
                             "needs the optional extra: pip install -e .[rerun])")


def check_rerun_argument(args: argparse.Namespace) -> None:
    """Before any work: ``--rerun`` needs rerun-sdk and a writable ``.rrd`` path (one error otherwise)."""
    if getattr(args, "rerun", None) is None:
        return
    from worldstereo.recording import RerunMissingError, require_rerun

    if args.rerun.suffix != ".rrd":
        raise CliError(f"--rerun {str(args.rerun)!r}: give a .rrd file")
    if args.rerun.is_dir() or not args.rerun.parent.exists():
        raise CliError(f"--rerun {str(args.rerun)!r}: its folder does not exist, or it is a folder")
    try:
        require_rerun()
    except RerunMissingError as exc:
        raise CliError(str(exc)) from None


def write_rerun(args: argparse.Namespace, model) -> None:
    """Write the ``--rerun`` recording of ``model``'s history (when asked)."""
    if getattr(args, "rerun", None) is None:
        return
    from worldstereo.recording import write_recording

    path = write_recording(model.history, args.rerun)
    note(args, f"rerun recording: {path} ({len(model.history)} frames; open it with: rerun {path})")


def add_ray_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers``, ``--ray-address``, ``--no-ray`` (shared by ``world`` and ``batch``)."""
    parser.add_argument("--workers", type=positive_int, default=None, metavar="N",
                        help="most tasks at once (default: every core of an embedded Ray, or the cluster's; a world's "
                             "rounds use an embedded Ray by default from 4 cores, or when this is given)")
    parser.add_argument("--ray-address", default=None, metavar="ADDR",
                        help="join a Ray cluster: auto, or ray://HOST:10001 (default: Ray embedded on this machine)")
    parser.add_argument("--no-ray", action="store_true", help="run everything in this process (debugging)")
