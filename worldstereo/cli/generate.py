"""``worldstereo generate``: frames along camera paths from an image, a procedural scene or an example folder.

Outputs are described in :mod:`worldstereo.exports`: per path video.mp4, frames/, depth/, cameras.json;
per run pointcloud.ply, pointcloud.glb, snapshot/, run.json.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldstereo import trajectory
from worldstereo.atomic import write_text_atomic
from worldstereo.backends.warm import warm
from worldstereo.camera import CameraParameters
from worldstereo.cli.camera_files import read_camera_file
from worldstereo.cli.common import (
    DEFAULT_OUT,
    CliError,
    add_device_argument,
    add_rerun_argument,
    check_rerun_argument,
    note,
    parse_size,
    positive_float,
    positive_int,
    write_rerun,
)
from worldstereo.trajectory import reanchor, subsample

__all__ = ["add_generate_parser", "generate_command", "load_depth_for", "make_generator_from_args"]


def _preset_param(text: str) -> tuple[str, float]:
    key, sep, value = str(text).partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not key.strip() or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"--preset-param must look like KEY=NUMBER (e.g. rx=0.1), got {text!r}")
    return key.strip(), number


def add_generate_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``generate`` subcommand and its options."""
    g = sub.add_parser(
        "generate", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="generate frames along camera paths and write video, frames, depth, cameras, point cloud, snapshot",
        description=(
            "Generate frames from one image along a camera path.\n\n"
            "Input (one of): --image IMG (optionally --depth D), --scene NAME (a procedural scene's start view with\n"
            "exact depth and camera), --example DIR (an official example folder), or --panorama PATH (a 360-degree\n"
            "equirectangular image, 2:1, optionally --depth with its range per pixel; a pano-bank folder; or an\n"
            "example folder holding pano_bank/).\n"
            "Path (one of, not with --example): --camera FILE or --preset NAME.\n\n"
            "--camera takes an official camera.json (renders kind with width/height, or images kind whose intrinsics\n"
            "are in pixels of the input image) or a nerfstudio camera_path.json. The file's first camera is the\n"
            "camera of the input image: the model's world frame is the file's world frame and every pose of the\n"
            "file is used as given (with --scene, the path is moved rigidly so that its first pose is the scene's\n"
            "start camera). --frames N keeps N poses evenly spaced over the file (first and last kept); by\n"
            "default every pose is used (81 for an images-kind file, 21 per path of a renders folder).\n"
            "With --panorama, every pose of a --camera file is a generated frame (no pose is the input; the file\n"
            "is in the panorama's frame: world up +Z, view 0000 along -X) and presets start at the centre looking\n"
            "along view 0000 (try --preset look_around, or walk with --preset-param yaw=90).\n\n"
            "--example DIR: renders/traj_*/camera.json paths are explored in the reference order (eloop, up,\n"
            "right, left) with one shared memory, starting from image.png at the first path's first camera;\n"
            "each path's outputs go to OUT/<path name>/. A folder with image.png + camera.json (images kind)\n"
            "is one path written to OUT/.\n\n"
            "Outputs (per path): video.mp4 (H.264), frames/NNN.png, depth/NNN.png (16-bit, millimetres of scene\n"
            "units, 0 = unknown), cameras.json (official, renders kind); (per run, in OUT): pointcloud.ply,\n"
            "pointcloud.glb, snapshot/ (WorldStereo.load), run.json (what was run)."
        ),
    )
    src = g.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="input image (PNG, JPEG, ...)")
    src.add_argument("--example", type=Path, metavar="DIR",
                     help="official example folder, or a shipped example's name (bicycle, Kitchen, Landscape...)")
    src.add_argument("--scene", help="procedural scene name (see 'worldstereo scenes'); its start view is the input")
    src.add_argument("--panorama", type=Path, metavar="PATH",
                     help="360-degree equirectangular image (2:1), pano-bank folder, or example folder with pano_bank/")
    g.add_argument("--depth", type=Path, metavar="D",
                   help="depth map of the input image: 16-bit PNG in millimetres, .npy or .exr in scene units")
    path = g.add_mutually_exclusive_group()
    path.add_argument("--camera", type=Path, metavar="FILE", help="camera.json or nerfstudio camera_path.json")
    path.add_argument("--preset", metavar="NAME", help=f"preset move: {', '.join(trajectory.list_presets())}")
    g.add_argument("--preset-param", type=_preset_param, action="append", default=[], metavar="KEY=NUMBER",
                   help="preset parameter, repeatable (e.g. angle=30, distance=0.5, rx=0.1 ry=0.1 for eloop)")
    g.add_argument("--frames", type=positive_int, default=None, metavar="N",
                   help="frames per path (presets: default 21; camera files: default every pose)")
    g.add_argument("--size", type=parse_size, default=(512, 384), metavar="WxH",
                   help="working size, multiples of 16 (default 512x384)")
    g.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR", help=f"output folder (default {DEFAULT_OUT})")
    g.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty output folder")
    g.add_argument("--depth-backend", choices=("auto", "moge", "prior"), default="auto",
                   help="depth when no --depth is given: auto = MoGe-2 (cached, or downloaded from the Hugging Face "
                        "Hub on first use), else the approximate prior with the reason")
    g.add_argument("--depth-model", metavar="REPO_OR_PATH", default=None,
                   help="MoGe-2 weights: a Hub repo id (e.g. Ruicheng/moge-2-vitl-normal) or a checkpoint; default: "
                        "the small vits variant on a CPU, vitl on CUDA")
    g.add_argument("--align-scale", action="store_true",
                   help="also scale a given --depth to the camera file (estimated depth always is)")
    g.add_argument("--fill", choices=("auto", "lama", "telea", "none"), default="auto",
                   help="what fills unknown regions of warp frames: auto = LaMa (downloaded once from the Hugging "
                        "Face Hub) when it can be had, else Telea; none leaves them black")
    g.add_argument("--generator", choices=("auto", "warp", "vace", "oracle"), default="auto",
                   help="auto (default: vace on a CUDA GPU when its weights can be had, else warp), warp "
                        "(training-free, CPU), vace (Wan2.1-VACE through diffusers, CUDA GPU) or oracle "
                        "(ground-truth renders of --scene)")
    g.add_argument("--prompt", default=None, metavar="TEXT",
                   help="text prompt of the vace generator (default: the example's prompt.json caption)")
    g.add_argument("--vace-steps", type=int, default=30, metavar="N", help="denoising steps per vace clip (default 30)")
    g.add_argument("--vace-offload", action="store_true", help="vace: model CPU offload, for GPUs with little memory")
    g.add_argument("--force-cpu", action="store_true",
                   help="let vace run on a CPU (hours per clip; for tests and tiny models)")
    add_device_argument(g)
    g.add_argument("--no-ggm", action="store_true", help="disable the Global-Geometric Memory")
    g.add_argument("--no-ssm", action="store_true", help="disable the Spatial-Stereo Memory")
    g.add_argument("--seed", type=int, default=0, help="random seed (also the procedural scene's texture seed)")
    g.add_argument("--fps", type=positive_float, default=8.0, help="video frame rate (default 8)")
    g.add_argument("--no-snapshot", action="store_true", help="do not write the memory snapshot")
    add_rerun_argument(g)
    g.add_argument("--quiet", action="store_true", help="no progress bar and no notices")
    g.set_defaults(func=generate_command)


@dataclass
class _Input:
    image: Any  # (H, W, 3) uint8 or (1, 3, H, W) float
    depth: Any | None
    camera: CameraParameters | None
    paths: list[tuple[str, CameraParameters]]  # explicit camera paths (name, cameras); empty for a preset
    source: str
    prompt: str = ""  # the example's prompt.json caption (text conditioning of the vace generator)
    kind: str = "image"  # image, panorama (an equirectangular image) or bank (posed views of one centre)
    cameras: CameraParameters | None = None  # the bank's cameras
    labels: list[str] | None = None  # the bank's view names


def _image_hw(image: Any) -> tuple[int, int]:
    return tuple(image.shape[:2]) if isinstance(image, np.ndarray) else tuple(image.shape[-2:])


def load_depth_for(args: argparse.Namespace, image: Any) -> np.ndarray | None:
    if args.depth is None:
        return None
    from worldstereo.backends.depth_file import load_depth_map

    depth = load_depth_map(args.depth)
    h, w = _image_hw(image)
    if depth.shape != (h, w):
        raise CliError(
            f"depth map {args.depth.name!r} is {depth.shape[1]}x{depth.shape[0]} but the image is {w}x{h}; "
            "they must have the same size"
        )
    return depth


def _read_panorama(args: argparse.Namespace) -> _Input:
    """``--panorama``: an equirectangular image (with an optional range map) or a bank; camera files are all generated."""
    from worldstereo.panorama.bank import view_name
    from worldstereo.panorama.files import read_panorama_input

    image, bank = read_panorama_input(args.panorama)
    cf = read_camera_file(args.camera, image_size=args.size) if args.camera is not None else None
    paths = [("camera", cf.cameras)] if cf is not None else []
    if bank is not None:
        if args.depth is not None:
            raise CliError("a pano bank brings its own depths/ (or none); do not give --depth")
        labels = [f"bank view {view_name(i)}" for i in range(len(bank))]
        return _Input(bank.images, bank.depths, None, paths, f"pano bank {bank.root}", kind="bank",
                      cameras=bank.cameras, labels=labels)
    return _Input(image, load_depth_for(args, image), None, paths, f"panorama {args.panorama}", kind="panorama")


def _read_inputs(args: argparse.Namespace) -> _Input:
    from worldstereo.imageio_utils import load_image

    if args.example is not None:
        if args.camera is not None or args.preset is not None:
            raise CliError("--example uses the folder's own cameras; do not give --camera or --preset")
        from worldstereo.examples import resolve_example
        from worldstereo.formats import read_example_folder

        try:
            args.example = resolve_example(args.example)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if (args.example / "image.png").is_file():
            load_image(args.example / "image.png")  # same checks as --image (size limit before decoding)
        ex = read_example_folder(args.example)
        paths = [(p.name, p.cameras) for p in ex.paths]
        if ex.paths[0].info.kind == "images":
            w, h = ex.image.shape[1], ex.image.shape[0]
            paths = [(n, CameraParameters(c.intrinsics, c.extrinsics, w, h)) for n, c in paths]
        from worldstereo.backends.vace import caption_from_prompt

        return _Input(ex.image, load_depth_for(args, ex.image), paths[0][1][0], paths, f"example {ex.root}",
                      caption_from_prompt(ex.prompt))

    if args.camera is None and args.preset is None:
        raise CliError("give a camera path: --camera FILE or --preset NAME")
    if args.panorama is not None:
        return _read_panorama(args)
    if args.scene is not None:
        if args.depth is not None:
            raise CliError("--scene brings its own exact depth; do not give --depth")
        from worldstereo.scenes import get_scene

        cf = read_camera_file(args.camera, image_size=args.size) if args.camera is not None else None
        view = get_scene(args.scene, seed=args.seed).start_view(*args.size)
        paths = [("camera", reanchor(cf.cameras, view.camera))] if cf is not None else []
        return _Input(view.image, view.depth, view.camera, paths, f"scene {args.scene}")

    image = load_image(args.image)
    depth = load_depth_for(args, image)
    if args.camera is None:
        return _Input(image, depth, None, [], f"image {args.image}")
    h, w = image.shape[:2]
    cf = read_camera_file(args.camera, image_size=(w, h))
    return _Input(image, depth, cf.cameras[0], [("camera", cf.cameras)], f"image {args.image}")


def _check_output_dir(args: argparse.Namespace) -> None:
    out: Path = args.out
    if out.exists() and not out.is_dir():
        raise CliError(f"--out {str(out)!r} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise CliError(f"output folder {str(out)!r} is not empty; pass --overwrite to write into it")
    import tempfile

    probe = out  # writable? found now, not after the model has started (and nothing created yet)
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    try:
        if not probe.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, f"{str(probe)!r} is not a folder")
        with tempfile.NamedTemporaryFile(dir=probe, prefix=".write-test-"):
            pass
    except OSError as err:
        raise CliError(f"--out {str(out)!r} is not writable: {err.strerror or err}") from None


def _check_frame_bounds(args: argparse.Namespace, paths: list[tuple[str, CameraParameters]]) -> None:
    """Frames per path within :data:`worldstereo.limits.MAX_PATH_FRAMES`, before any work."""
    from worldstereo.limits import MAX_PATH_FRAMES, check_path_frames

    if args.frames is not None:
        check_path_frames(args.frames, "--frames")
    elif paths:
        for name, cams in paths:
            if len(cams) > MAX_PATH_FRAMES:
                check_path_frames(len(cams), f"camera path {name!r} (every pose; pass --frames N to subsample)")


def _clear_run_outputs(out: Path) -> None:
    """Remove the run-level outputs of an earlier run (only the names this command writes)."""
    import shutil

    for name in ("pointcloud.ply", "pointcloud.glb", "run.json"):
        (out / name).unlink(missing_ok=True)
    snap = out / "snapshot"
    if snap.is_dir() and {f.name for f in snap.iterdir()} <= {"state.json", "state.safetensors"}:
        shutil.rmtree(snap)


def generate_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo generate`` from parsed arguments; returns the exit status."""
    from worldstereo.exports import write_memory
    from worldstereo.model import WorldStereo, WorldStereoConfig

    # cheap checks first: nothing heavy runs before the arguments are known to be good
    if args.preset is not None and args.preset not in trajectory.list_presets():
        raise CliError(f"unknown preset {args.preset!r}; valid presets: {', '.join(trajectory.list_presets())}")
    if args.preset_param and args.preset is None:
        raise CliError("--preset-param needs --preset")
    if args.preset_param:
        allowed = sorted(trajectory.PRESETS[args.preset].params)
        unknown = sorted({k for k, _ in args.preset_param} - set(allowed))
        if unknown:
            raise CliError(f"preset {args.preset!r} has no parameter(s) {unknown}; it takes {allowed}")
    if args.generator == "oracle" and args.scene is None:
        raise CliError("--generator oracle renders a procedural scene's ground truth: give --scene NAME")
    if args.scene is not None:
        from worldstereo.scenes import list_scenes

        if args.scene not in list_scenes():
            raise CliError(f"unknown scene {args.scene!r}; valid scenes: {', '.join(list_scenes())}")
    if args.frames is not None:
        _check_frame_bounds(args, [])
    check_rerun_argument(args)
    _check_output_dir(args)
    inp = _read_inputs(args)
    _check_frame_bounds(args, inp.paths)

    torch.manual_seed(args.seed)
    w, h = args.size
    config = WorldStereoConfig(
        width=w, height=h, depth_backend=args.depth_backend, depth_model=args.depth_model, generator=args.generator,
        scene=args.scene, scene_seed=args.seed, use_ggm=not args.no_ggm, use_ssm=not args.no_ssm, device=args.device,
    )
    estimator = None
    if inp.depth is None:
        from worldstereo.model import make_depth_estimator

        estimator = warm(("depth", args.depth_backend, args.depth_model, config.model_device()),
                         lambda: make_depth_estimator(args.depth_backend, args.depth_model, config.model_device(),
                                                      show_progress=not args.quiet))
    prompt = inp.prompt if args.prompt is None else args.prompt
    config.prompt = prompt
    generator = make_generator_from_args(args, prompt)
    model = WorldStereo(config, depth_estimator=estimator, generator=generator)
    if inp.kind == "panorama":
        info = model.start_panorama(inp.image, depth=inp.depth)
    elif inp.kind == "bank":
        info = model.start_views(inp.image, inp.cameras, inp.depth, labels=inp.labels)
    else:
        align_to = inp.paths[0][1] if inp.paths else None
        info = model.start(inp.image, depth=inp.depth, camera=inp.camera, align_to=align_to,
                           align_scale=True if args.align_scale else None)
    note(args, f"depth: {info.message or info.depth_source}")
    if info.scale_message:
        note(args, info.scale_message)
    note(args, f"generator: {model.generator_message}")
    filler = getattr(model.generator, "filler", None)
    if filler is not None:
        note(args, f"fill: {filler.message}")

    if inp.paths:
        paths = [(name, subsample(cams, args.frames)) for name, cams in inp.paths]
        if args.frames is not None and any(len(c) < args.frames for _, c in inp.paths):
            note(args, f"--frames {args.frames} is more than a camera file holds; every pose is used")
    else:
        params = dict(args.preset_param)
        cams = trajectory.preset(args.preset, model.start_camera, args.frames or 21,
                                 scene_depth=model.scene_depth, **params)
        paths = [(args.preset, cams)]

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        _clear_run_outputs(out)
    multi = len(paths) > 1
    summary: list[dict[str, Any]] = []
    run: dict[str, Any] = {
        "complete": False,
        "reason": "running (a run that stops without finishing leaves this)",
        "input": inp.source,
        "input_kind": info.kind,
        "views": info.num_views,
        "size": [w, h],
        "depth_source": info.depth_source,
        "approximate_geometry": info.approximate,
        "depth_message": info.message,
        "depth_model": info.depth_model,
        "scale_factor": info.scale_factor,
        "scale_message": info.scale_message,
        "scene_depth": info.scene_depth,
        "generator": model.generator_message,
        "paths": summary,
        "config": asdict(config),
    }
    write_text_atomic(out / "run.json", json.dumps(run, indent=1) + "\n")
    try:
        _generate_paths(args, model, paths, out, multi, summary)
        mem = write_memory(out, model, snapshot=not args.no_snapshot)
        write_rerun(args, model)
    except BaseException as exc:
        reason = "interrupted" if isinstance(exc, KeyboardInterrupt) else f"failed: {exc}"
        run.update(reason=reason, paths=summary)
        with contextlib.suppress(OSError):  # the disk may be full: run.json then keeps "running"
            write_text_atomic(out / "run.json", json.dumps(run, indent=1) + "\n")
        raise
    run.update(complete=True, reason="", paths=summary, points=mem.num_points)
    write_text_atomic(out / "run.json", json.dumps(run, indent=1) + "\n")
    print(f"point cloud: {mem.ply} ({mem.num_points} points), {mem.glb}")
    if not args.no_snapshot:
        print(f"memory snapshot: {mem.snapshot}")
    return 0


def _generate_paths(args: argparse.Namespace, model: Any, paths: list[tuple[str, CameraParameters]], out: Path,
                    multi: bool, summary: list[dict[str, Any]]) -> None:
    """Generate and write every path; ``summary`` gets one entry per finished path."""
    from tqdm import tqdm

    from worldstereo.exports import RunWriter

    for name, cams in paths:
        _warn_coverage(args, model, name, cams)
        path_dir = out / name if multi else out
        bar = tqdm(total=len(cams), desc=name, unit="frame", file=sys.stderr, disable=args.quiet, dynamic_ncols=True)
        try:
            with RunWriter(path_dir, fps=args.fps) as writer, contextlib.closing(model.generate(cams, len(cams))) as steps:
                for step in steps:
                    writer.add(step, total=len(cams))
                    bar.update(1)
        finally:
            bar.close()
        o = writer.outputs
        summary.append({"name": name, "frames": o.num_frames, "folder": str(path_dir)})
        print(f"{name}: {o.num_frames} frames -> {o.video}")


def _frame_ranges(frames: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3, 7'."""
    parts: list[str] = []
    for f in frames:
        if parts and parts[-1][1] == f - 1:
            parts[-1] = (parts[-1][0], f)
        else:
            parts.append((f, f))
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in parts)


def _warn_coverage(args: argparse.Namespace, model: Any, name: str, cameras: CameraParameters) -> None:
    """Coverage guard: name the frames of the path that look at space the memories do not know yet."""
    if args.quiet or not model.config.use_ggm:
        return
    from worldstereo.coverage import UNKNOWN, path_coverage

    cov = path_coverage(model.ggm.point_cloud, cameras)
    unknown = cov.frames("unknown")
    if unknown:
        note(args, f"{name}: frames {_frame_ranges(unknown)} of {len(cameras)} look at space the memory does not "
                    f"know yet (>{UNKNOWN:.0%} holes now); the generator fills them, from the frames before them "
                    "where the path turns gradually")


def make_generator_from_args(args: argparse.Namespace, prompt: str) -> Any | None:
    """The generator the flags ask for (None = the config's, i.e. the oracle); vace falls back to warp
    with a note when its weights cannot be had, and refuses a CPU unless --force-cpu."""
    if args.generator == "oracle":
        return None
    named = getattr(args, "device", "auto")
    want_vace = args.generator == "vace" or (args.generator == "auto" and torch.cuda.is_available() and named != "cpu")
    if want_vace:
        from worldstereo.backends.vace import VaceGenerator
        from worldstereo.hub import WeightsUnavailableError

        device = named if named != "auto" else "cpu" if args.force_cpu and not torch.cuda.is_available() else "auto"
        try:
            vace = warm(("vace", args.vace_steps, args.vace_offload, device, args.force_cpu),
                        lambda: VaceGenerator(prompt=prompt, num_inference_steps=args.vace_steps,
                                              offload=args.vace_offload, device=device, force_cpu=args.force_cpu))
            vace.prompt = prompt  # (a kept pipeline serves every input: its prompt is this one's)
            return vace
        except WeightsUnavailableError as err:
            note(args, f"vace unavailable, using warp: {err}")
    from worldstereo.backends.fill import make_filler
    from worldstereo.backends.generators import FRAME_GENERATORS

    return warm(("warp", args.fill), lambda: FRAME_GENERATORS.create(
        "warp", filler=make_filler(args.fill, show_progress=not args.quiet)))
