"""``worldstereo batch INPUTS... --out D``: one task per input (a world, or one path with ``--preset`` /
``--camera``) on Ray, embedded or on a cluster; ``D/summary.json`` and ``D/summary.csv`` say how each went.

An input is an image, a panorama (2:1) or pano bank, an example folder, or a text file listing them
(one per line, ``#`` comments). Results go to ``D/<name>/``: the input's file name, or its folder's name where
the file name says nothing (``Caterpillar/image.png`` -> ``Caterpillar``); ``summary.csv`` keeps each input's full
path. A bad input fails its own entry,
with its error in the summary, never the batch; a task whose worker dies is retried by Ray; a rerun
skips results that are complete (their ``run.json`` / ``world.json`` say so); Ctrl-C cancels what
is pending and leaves finished results whole.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from worldstereo.atomic import write_text_atomic
from worldstereo.cli.common import (
    EXIT_INTERRUPTED,
    CliError,
    Parser,
    add_device_argument,
    add_ray_arguments,
    parse_size,
    positive_int,
    run_command,
)

__all__ = ["add_batch_parser", "batch_command", "expand_inputs", "input_name", "run_input"]

SUMMARY_FIELDS = ("input", "name", "status", "frames", "seconds", "error")


def add_batch_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``batch`` subcommand."""
    b = sub.add_parser(
        "batch", parents=[common], help="many inputs at once on Ray: a world (or one path) per input",
        description="Run a world (the default plan) or one path (--preset / --camera) for every input, one Ray task "
                    "each, embedded on this machine or on a cluster (--ray-address). INPUTS are images, panoramas, "
                    "pano banks, example folders, or text files listing them. D/<name>/ holds each result; "
                    "D/summary.json and D/summary.csv say status, frames, seconds and error per input.",
    )
    b.add_argument("inputs", nargs="+", metavar="INPUT", help="image, panorama, bank or example folder, or a list file")
    b.add_argument("--out", type=Path, required=True, metavar="D", help="output folder (a rerun skips complete results)")
    path = b.add_mutually_exclusive_group()
    path.add_argument("--preset", metavar="NAME", help="one path per input with this preset instead of a world")
    path.add_argument("--camera", type=Path, metavar="FILE", help="one path per input along this camera file")
    b.add_argument("--trajectories", type=positive_int, default=None, metavar="N", help="trajectories of each world")
    b.add_argument("--frames", type=positive_int, default=None, metavar="F", help="frames per path (default 21)")
    b.add_argument("--size", type=parse_size, default=(512, 384), metavar="WxH", help="working size (default 512x384)")
    b.add_argument("--fill", choices=("auto", "lama", "telea", "none"), default="auto", help="hole fill of warp frames")
    add_device_argument(b)
    b.add_argument("--depth-backend", choices=("auto", "moge", "prior"), default="auto", help="depth when none is given")
    add_ray_arguments(b)
    b.add_argument("--quiet", action="store_true", help="no progress bar")
    b.set_defaults(func=batch_command)


def expand_inputs(items: list[str]) -> list[Path]:
    """Inputs as paths: a ``.txt`` / ``.list`` file is read as one input per line (relative to the file)."""
    out: list[Path] = []
    for item in items:
        p = Path(item)
        if p.is_file() and p.suffix.lower() in (".txt", ".list"):
            for line in p.read_text(encoding="utf-8").splitlines():
                line = line.split("#", 1)[0].strip()
                if line:
                    q = Path(line)
                    out.append(q if q.is_absolute() else p.parent / q)
        else:
            out.append(p)
    return out


#: file names that say nothing of their input (an official example is ``<name>/image.png``): the folder names it
GENERIC_STEMS = frozenset({"image", "img", "input", "photo", "picture", "pic", "rgb", "color", "colour", "frame", "view",
                           "pano", "panorama", "equirect", "scene", "example", "start", "first", "source"})


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)[:64].strip(".")


def _is_generic(stem: str) -> bool:
    """A file name that says nothing of its input: a word of :data:`GENERIC_STEMS`, in any case."""
    return stem.lower() in GENERIC_STEMS


def input_name(path: Path) -> str:
    """A result folder's name for an input: its stem (``bicycle.jpg`` -> ``bicycle``), or its folder's name where the
    stem is generic (``Caterpillar/image.png`` -> ``Caterpillar``); an example or bank folder is its own name."""
    stem = path.name if path.is_dir() else path.stem
    if _is_generic(stem) and _safe(path.resolve().parent.name) and not _is_generic(path.resolve().parent.name):
        stem = path.resolve().parent.name
    return _safe(stem) or "input"


def _names(inputs: list[Path]) -> list[str]:
    """Unique folder names (:func:`input_name`), with ``-2``, ``-3``... where two share one."""
    names, seen = [], {}
    for p in inputs:
        base = input_name(p)
        n = seen.get(base, 0) + 1
        seen[base] = n
        names.append(base if n == 1 else f"{base}-{n}")
    return names


def _kind_flag(path: Path) -> str:
    """The CLI flag an input goes under: ``--example`` (a folder of an official example), ``--panorama``, ``--image``."""
    from worldstereo.panorama.equirect import is_panorama_size
    from worldstereo.panorama.files import find_bank_folder

    if path.is_dir():
        return "--panorama" if find_bank_folder(path) is not None else "--example"
    try:
        from PIL import Image

        with Image.open(path) as im:
            return "--panorama" if is_panorama_size(*im.size) else "--image"
    except Exception:  # noqa: BLE001 - an unreadable file: --image gives its clear error
        return "--image"


def _complete(folder: Path) -> tuple[bool, int]:
    """Whether a result folder holds a complete run or world, and its frames."""
    for name, key in (("world.json", "frames"), ("run.json", "paths")):
        p = folder / name
        if p.is_file():
            try:
                meta = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                return False, 0
            if meta.get("complete"):
                frames = len(meta["frames"]) if key == "frames" else sum(int(x.get("frames", 0)) for x in meta.get("paths", []))
                return True, frames
    return False, 0


def run_input(argv: list[str], folder: str, in_task: bool = False) -> dict[str, Any]:
    """Run one input's command in this process (a Ray task's body when ``in_task``); its error, if any, is
    returned, not raised. In a task the command's thread budget is the task's CPUs, not the node's cores, and the
    worker keeps its models for the next input (:mod:`worldstereo.backends.warm`): ``models_built`` says how many
    this input had to build (0 on a warm worker), ``pid`` which process ran it."""
    import os

    if in_task:
        from worldstereo.backends import warm
        from worldstereo.ray_cluster import task_threads

        os.environ["WORLDSTEREO_THREADS"] = str(task_threads())
        warm.enable()  # the worker runs other inputs after this one: it keeps its depth model, fill and generator
    from worldstereo.backends import warm

    built_before = sum(warm.built().values())
    t0 = time.perf_counter()
    running = Path(folder).parent / ".running"  # which process runs which input (for operators, and tests)
    running.mkdir(parents=True, exist_ok=True)
    marker = running / f"{Path(folder).name}.pid"
    write_text_atomic(marker, f"{os.getpid()}\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = _run(argv)
    marker.unlink(missing_ok=True)
    ok, frames = _complete(Path(folder))
    lines = [x[len("error: "):] for x in err.getvalue().splitlines() if x.startswith("error: ")]
    return {"status": "complete" if rc == 0 and ok else "failed", "frames": frames,
            "seconds": round(time.perf_counter() - t0, 2), "error": "" if rc == 0 else (lines[-1] if lines else f"exit {rc}"),
            "models_built": sum(warm.built().values()) - built_before, "pid": os.getpid()}


def _run(argv: list[str]) -> int:
    """``worldstereo generate ...`` or ``worldstereo world ...`` in this process (the batch's own commands)."""
    from worldstereo.cli.generate import add_generate_parser
    from worldstereo.cli.world import add_world_parser

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS)
    parser = Parser(prog="worldstereo")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    add_generate_parser(sub, common)
    add_world_parser(sub, common)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    return run_command(args)


#: the batch options a task needs to build its input's command
TASK_OPTIONS = ("size", "fill", "depth_backend", "device", "frames", "preset", "camera", "trajectories")


def _argv(options: dict[str, Any], path: Path, folder: Path) -> list[str]:
    """The ``generate`` / ``world`` command of one input (built in the task: telling a panorama from a photo opens
    the file and imports what the driver does not need)."""
    w, h = options["size"]
    common = [_kind_flag(path), str(path), "--size", f"{w}x{h}", "--fill", options["fill"], "--depth-backend",
              options["depth_backend"], "--device", options["device"], "--out", str(folder), "--quiet"]
    if options["frames"]:
        common += ["--frames", str(options["frames"])]
    if options["preset"] or options["camera"]:
        cmd = ["generate", *common, "--overwrite"]
        if common[0] == "--example":
            return cmd  # an example's own paths
        return cmd + (["--preset", options["preset"]] if options["preset"] else ["--camera", str(options["camera"])])
    extra = ["--trajectories", str(options["trajectories"])] if options["trajectories"] else []
    return ["world", *common, *extra, "--no-ray"]  # the batch is the parallel part


def run_batch_input(options: dict[str, Any], path: str, folder: str, in_task: bool = False) -> dict[str, Any]:
    """One input of a batch (:data:`TASK_OPTIONS` of its arguments): its command, run by :func:`run_input`; in a task
    the result also names the Ray node that ran it (``node``, its id's first 12 hex digits)."""
    result = run_input(_argv(options, Path(path), Path(folder)), folder, in_task)
    if in_task:
        import ray

        result["node"] = ray.get_runtime_context().get_node_id()[:12]
    return result


def _write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    write_text_atomic(out / "summary.json", json.dumps(rows, indent=1) + "\n")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=SUMMARY_FIELDS)
    writer.writeheader()
    for r in rows:
        writer.writerow({k: r.get(k, "") for k in SUMMARY_FIELDS})
    write_text_atomic(out / "summary.csv", buf.getvalue())


def batch_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo batch``; exit 0 when every input completed, 2 when any failed, 130 on Ctrl-C."""
    from tqdm import tqdm

    inputs = expand_inputs(args.inputs)
    if not inputs:
        raise CliError("no inputs given")
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {str(out)!r} exists and is not a folder")
    out.mkdir(parents=True, exist_ok=True)
    names = _names(inputs)
    rows: list[dict[str, Any]] = []
    pending: list[int] = []
    for i, (path, name) in enumerate(zip(inputs, names, strict=True)):
        ok, frames = _complete(out / name)
        rows.append({"input": str(path.absolute()), "name": name, "status": "complete (earlier run)" if ok else "pending",
                     "frames": frames, "seconds": 0.0, "error": ""})
        if not ok:
            pending.append(i)
    _write_summary(out, rows)
    bar = tqdm(total=len(rows), initial=len(rows) - len(pending), desc="batch", unit="input", file=sys.stderr,
               disable=args.quiet, dynamic_ncols=True)

    def finish(i: int, result: dict[str, Any]) -> None:
        rows[i].update(result)
        _write_summary(out, rows)
        bar.update(1)

    try:
        options = {k: getattr(args, k) for k in TASK_OPTIONS}
        if args.no_ray:
            for i in pending:
                finish(i, run_batch_input(options, str(inputs[i]), str(out / names[i])))
        else:
            from worldstereo.ray_cluster import MAX_RETRIES, connect, gpu_options

            ray = connect(args.ray_address, args.workers)
            task = ray.remote(max_retries=MAX_RETRIES)(run_batch_input).options(**gpu_options(ray))
            refs = {task.remote(options, str(inputs[i]), str(out / names[i]), True): i for i in pending}
            try:
                while refs:
                    ready, _ = ray.wait(list(refs), num_returns=1)
                    i = refs.pop(ready[0])
                    try:
                        result = ray.get(ready[0])
                    except Exception as exc:  # noqa: BLE001 - a task that failed for good: its entry, not the batch
                        result = {"status": "failed", "frames": 0, "seconds": 0.0,
                                  "error": str(exc).strip().splitlines()[-1][:300] if str(exc).strip() else type(exc).__name__}
                    finish(i, result)
            except KeyboardInterrupt:
                for ref, i in refs.items():
                    ray.cancel(ref, force=True)
                    rows[i]["status"] = "cancelled"
                raise
    except KeyboardInterrupt:
        _write_summary(out, rows)
        print("interrupted: pending inputs cancelled; finished results are whole", file=sys.stderr)
        return EXIT_INTERRUPTED
    finally:
        bar.close()
    failed = [r for r in rows if r["status"] == "failed"]
    print(f"batch: {len(rows) - len(failed)} of {len(rows)} complete -> {out / 'summary.csv'}")
    for r in failed:
        print(f"  {r['name']}: {r['error']}", file=sys.stderr)
    return 2 if failed else 0
