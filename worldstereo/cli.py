"""The ``worldstereo`` command line.

Commands::

    worldstereo generate --image IMG [--depth D] (--camera FILE | --preset NAME) [--frames N] [--size WxH] [--out DIR]
    worldstereo generate --scene NAME (--camera FILE | --preset NAME) [--generator warp|oracle] ...
    worldstereo generate --example DIR [--frames N] ...
    worldstereo scenes                         # list the procedural scenes
    worldstereo scenes render NAME --out DIR   # image.png, depth.png (16-bit mm), depth.npy, camera.json
    worldstereo download-weights [--device auto|cpu|cuda|all] [--generator vace]   # fill the Hugging Face cache for offline use

Outputs are described in :mod:`worldstereo.exports`. Bad input gives one line ``error: ...`` on stderr
and exit status 2 (``--debug`` or ``WORLDSTEREO_DEBUG=1`` shows the traceback); Ctrl-C gives status 130 and leaves no half-written file.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import re
import sys
import traceback
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldstereo.atomic import write_text_atomic
from worldstereo.camera import CameraParameters

__all__ = ["CameraFile", "build_parser", "main", "parse_size", "read_camera_file", "subsample"]

EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
SIZE_MULTIPLE = 16
MAX_SIDE = 4096
DEFAULT_OUT = "worldstereo-output"


class CliError(ValueError):
    """A user error with a message ready to print."""


# ------------------------------------------------------------------------------------------------ argument parsing
class _Parser(argparse.ArgumentParser):
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


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def _positive_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return v


def _preset_param(text: str) -> tuple[str, float]:
    key, sep, value = str(text).partition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not key.strip() or not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"--preset-param must look like KEY=NUMBER (e.g. rx=0.1), got {text!r}")
    return key.strip(), number


def build_parser() -> argparse.ArgumentParser:
    from worldstereo.trajectory import list_presets

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the full traceback on errors")

    parser = _Parser(prog="worldstereo", description="WorldStereo Explorer: camera-guided scene exploration with memory.")
    # its own action (parents share action objects, and a default set here would leak into the subcommands)
    parser.add_argument("--debug", action="store_true", help="show the full traceback on errors")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser, metavar="{generate,scenes,eval,download-weights}")

    g = sub.add_parser(
        "generate", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="generate frames along camera paths and write video, frames, depth, cameras, point cloud, snapshot",
        description=(
            "Generate frames from one image along a camera path.\n\n"
            "Input (one of): --image IMG (optionally --depth D), --scene NAME (a procedural scene's start view with\n"
            "exact depth and camera), or --example DIR (an official example folder).\n"
            "Path (one of, not with --example): --camera FILE or --preset NAME.\n\n"
            "--camera takes an official camera.json (renders kind with width/height, or images kind whose intrinsics\n"
            "are in pixels of the input image) or a nerfstudio camera_path.json. The file's first camera is the\n"
            "camera of the input image: the model's world frame is the file's world frame and every pose of the\n"
            "file is used as given (with --scene, the path is moved rigidly so that its first pose is the scene's\n"
            "start camera). --frames N keeps N poses evenly spaced over the file (first and last kept); by\n"
            "default every pose is used (81 for an images-kind file, 21 per path of a renders folder).\n\n"
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
    src.add_argument("--example", type=Path, metavar="DIR", help="official example folder")
    src.add_argument("--scene", help="procedural scene name (see 'worldstereo scenes'); its start view is the input")
    g.add_argument("--depth", type=Path, metavar="D",
                   help="depth map of the input image: 16-bit PNG in millimetres, .npy or .exr in scene units")
    path = g.add_mutually_exclusive_group()
    path.add_argument("--camera", type=Path, metavar="FILE", help="camera.json or nerfstudio camera_path.json")
    path.add_argument("--preset", metavar="NAME", help=f"preset move: {', '.join(list_presets())}")
    g.add_argument("--preset-param", type=_preset_param, action="append", default=[], metavar="KEY=NUMBER",
                   help="preset parameter, repeatable (e.g. angle=30, distance=0.5, rx=0.1 ry=0.1 for eloop)")
    g.add_argument("--frames", type=_positive_int, default=None, metavar="N",
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
    g.add_argument("--no-ggm", action="store_true", help="disable the Global-Geometric Memory")
    g.add_argument("--no-ssm", action="store_true", help="disable the Spatial-Stereo Memory")
    g.add_argument("--seed", type=int, default=0, help="random seed (also the procedural scene's texture seed)")
    g.add_argument("--fps", type=_positive_float, default=8.0, help="video frame rate (default 8)")
    g.add_argument("--no-snapshot", action="store_true", help="do not write the memory snapshot")
    g.add_argument("--quiet", action="store_true", help="no progress bar and no notices")
    g.set_defaults(func=_cmd_generate)

    s = sub.add_parser("scenes", parents=[common], help="list procedural scenes or render one's start view",
                       description="List the procedural scenes, or render a scene's start view.")
    s.set_defaults(func=_cmd_scenes_list)
    ssub = s.add_subparsers(dest="scenes_command", parser_class=_Parser, metavar="{list,render}")
    ssub.add_parser("list", parents=[common], help="list scenes (the default)").set_defaults(func=_cmd_scenes_list)
    r = ssub.add_parser(
        "render", parents=[common], help="write a scene's start view",
        description="Write image.png, depth.png (16-bit, millimetres), depth.npy (float32 scene units) and "
                    "camera.json (official, renders kind) of a scene's start view.",
    )
    r.add_argument("name", help="scene name")
    r.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    r.add_argument("--size", type=parse_size, default=(512, 384), metavar="WxH", help="image size (default 512x384)")
    r.add_argument("--seed", type=int, default=0, help="texture seed")
    r.set_defaults(func=_cmd_scenes_render)

    dw = sub.add_parser(
        "download-weights", parents=[common], help="fetch the model weights the defaults need into the Hugging Face cache",
        description="Download the weights the defaults use into the Hugging Face cache (HF_HOME), for offline machines "
                    "and a Space's build step: MoGe-2 (the small vits variant for a CPU, vitl for CUDA) and LaMa (hole filling). "
                    "HF_ENDPOINT and HF_TOKEN are honoured; files already cached are not downloaded again.",
    )
    dw.add_argument("--device", choices=("auto", "cpu", "cuda", "all"), default="auto",
                    help="which default variants: this machine's (auto), a CPU's, a GPU's, or all")
    dw.add_argument("--depth-model", metavar="REPO", action="append", default=[],
                    help="a MoGe-2 repo id to fetch as well (repeatable)")
    dw.add_argument("--no-fill", action="store_true", help="skip the LaMa hole-filling weights")
    dw.add_argument("--generator", choices=("vace",), action="append", default=[],
                    help="also fetch a learned generator's weights (vace: Wan2.1-VACE-1.3B, about 20 GB on disk)")
    dw.add_argument("--quiet", action="store_true", help="no progress bar")
    dw.set_defaults(func=_cmd_download_weights)

    from worldstereo.eval.ablation import add_eval_arguments, eval_command

    e = sub.add_parser("eval", parents=[common], help="memory ablation (no memory / +GGM / +GGM+SSM) and report",
                       description="Run the memory ablation over procedural scenes and the four reference paths "
                                   "and write report.md, results.json and charts.")
    add_eval_arguments(e)
    e.set_defaults(func=eval_command)
    esub = e.add_subparsers(dest="eval_command", parser_class=_Parser, metavar="{fidelity,fill}")
    from worldstereo.eval.fidelity import add_fidelity_arguments, fidelity_command

    fid = esub.add_parser(
        "fidelity", parents=[common], help="coverage of the official example paths (blank frames, hole share, "
                                           "IoU and PSNR against the official renders)",
        description="Per path of official example folders: blank frames (>90%% holes before generation), mean hole "
                    "share, and for reconstruction-kind examples the hole-mask IoU and PSNR of the start point cloud's "
                    "renders against the official render.mp4 / render_mask.mp4.",
    )
    add_fidelity_arguments(fid)
    fid.set_defaults(func=fidelity_command)
    from worldstereo.eval.fill_quality import add_fill_arguments, fill_command

    fq = esub.add_parser(
        "fill", parents=[common], help="hole fillers on the procedural scenes: PSNR and sharpness where nothing was known",
        description="Run warp along two orbits of the procedural scenes with each hole filler (telea; lama where its "
                    "weights are cached) and score the disoccluded pixels against the ground truth: PSNR and "
                    "sharpness (gradient magnitude relative to the truth's).",
    )
    add_fill_arguments(fq)
    fq.set_defaults(func=fill_command)
    return parser


# ------------------------------------------------------------------------------------------------ camera files
@dataclass(frozen=True)
class CameraFile:
    """Cameras read from a ``--camera`` file.

    Attributes:
        cameras: N cameras (world-to-camera, OpenCV axes; float64), of size ``cameras.width x height``.
        kind: ``"renders"``, ``"images"`` (official camera.json kinds) or ``"nerfstudio"``.
    """

    cameras: CameraParameters
    kind: str


def read_camera_file(path: str | os.PathLike, image_size: tuple[int, int] | None = None) -> CameraFile:
    """Read an official ``camera.json`` (either kind) or a nerfstudio ``camera_path.json``, told apart by keys.

    Args:
        image_size: (width, height) of the input image. The images kind (no size keys, intrinsics in pixels
            of the input image) takes it as the cameras' size; a nerfstudio path keeps its vertical field of
            view at that size (square pixels). The renders kind keeps its own ``width``/``height``.
    """
    from worldstereo import formats

    p = Path(path)
    if not p.is_file():
        raise CliError(f"camera file not found: {str(p)!r}")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise CliError(f"{p}: not a text JSON file") from None
    except json.JSONDecodeError as exc:
        raise CliError(f"{p}: broken JSON: {exc}") from None
    if isinstance(data, dict) and "camera_path" in data:
        cams = formats.read_nerfstudio_path(p).cameras
        if image_size is not None and tuple(image_size) != (cams.width, cams.height):
            # nerfstudio gives a vertical fov: keep it for the input image's size, square pixels
            cams = CameraParameters.from_fov(cams.fov_y, *image_size, extrinsics=cams.extrinsics)
        return CameraFile(cams, "nerfstudio")
    if isinstance(data, dict) and "extrinsic" in data:
        cams, info = formats.read_camera_json(p)
        if info.kind == "images" and image_size is not None:
            cams = CameraParameters(cams.intrinsics, cams.extrinsics, *image_size)
        return CameraFile(cams, info.kind)
    raise CliError(
        f"{p}: not a camera file: expected an official camera.json ('extrinsic', 'intrinsic') "
        "or a nerfstudio camera_path.json ('camera_path')"
    )


def subsample(cameras: CameraParameters, num_frames: int | None) -> CameraParameters:
    """``num_frames`` cameras evenly spaced over ``cameras`` (first and last kept); all if None or more."""
    n = len(cameras)
    if num_frames is None or num_frames >= n:
        return cameras
    idx = np.unique(np.round(np.linspace(0, n - 1, num_frames)).astype(np.int64))
    return cameras[torch.from_numpy(idx)]


def _reanchor(cameras: CameraParameters, start: CameraParameters) -> CameraParameters:
    """Move a path rigidly so that its first pose becomes ``start``'s: ``E_i' = E_i E_0^-1 E_start``."""
    E = cameras.extrinsics.double()
    M = torch.linalg.inv(E[0]) @ start.extrinsics[0].double().to(E.device)
    E2 = E @ M
    E2[:, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=E2.dtype)
    return CameraParameters(cameras.intrinsics.double(), E2, cameras.width, cameras.height)


# ------------------------------------------------------------------------------------------------ generate
@dataclass
class _Input:
    image: Any  # (H, W, 3) uint8 or (1, 3, H, W) float
    depth: Any | None
    camera: CameraParameters | None
    paths: list[tuple[str, CameraParameters]]  # explicit camera paths (name, cameras); empty for a preset
    source: str
    prompt: str = ""  # the example's prompt.json caption (text conditioning of the vace generator)


def _note(args: argparse.Namespace, text: str) -> None:
    if not args.quiet:
        print(f"note: {text}", file=sys.stderr)


def _image_hw(image: Any) -> tuple[int, int]:
    return tuple(image.shape[:2]) if isinstance(image, np.ndarray) else tuple(image.shape[-2:])


def _load_depth(args: argparse.Namespace, image: Any) -> np.ndarray | None:
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


def _read_inputs(args: argparse.Namespace) -> _Input:
    from worldstereo.imageio_utils import load_image

    if args.example is not None:
        if args.camera is not None or args.preset is not None:
            raise CliError("--example uses the folder's own cameras; do not give --camera or --preset")
        from worldstereo.formats import read_example_folder

        if not args.example.is_dir():
            raise CliError(f"example folder not found: {str(args.example)!r}")
        if (args.example / "image.png").is_file():
            load_image(args.example / "image.png")  # same checks as --image (size limit before decoding)
        ex = read_example_folder(args.example)
        paths = [(p.name, p.cameras) for p in ex.paths]
        if ex.paths[0].info.kind == "images":
            w, h = ex.image.shape[1], ex.image.shape[0]
            paths = [(n, CameraParameters(c.intrinsics, c.extrinsics, w, h)) for n, c in paths]
        from worldstereo.backends.vace import caption_from_prompt

        return _Input(ex.image, _load_depth(args, ex.image), paths[0][1][0], paths, f"example {ex.root}",
                      caption_from_prompt(ex.prompt))

    if args.camera is None and args.preset is None:
        raise CliError("give a camera path: --camera FILE or --preset NAME")
    if args.scene is not None:
        if args.depth is not None:
            raise CliError("--scene brings its own exact depth; do not give --depth")
        from worldstereo.scenes import get_scene

        cf = read_camera_file(args.camera, image_size=args.size) if args.camera is not None else None
        view = get_scene(args.scene, seed=args.seed).start_view(*args.size)
        paths = [("camera", _reanchor(cf.cameras, view.camera))] if cf is not None else []
        return _Input(view.image, view.depth, view.camera, paths, f"scene {args.scene}")

    image = load_image(args.image)
    depth = _load_depth(args, image)
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


def _cmd_generate(args: argparse.Namespace) -> int:

    from worldstereo import trajectory
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
    _check_output_dir(args)
    inp = _read_inputs(args)
    _check_frame_bounds(args, inp.paths)

    torch.manual_seed(args.seed)
    w, h = args.size
    config = WorldStereoConfig(
        width=w, height=h, depth_backend=args.depth_backend, depth_model=args.depth_model, generator=args.generator,
        scene=args.scene, scene_seed=args.seed, use_ggm=not args.no_ggm, use_ssm=not args.no_ssm,
    )
    estimator = None
    if inp.depth is None:
        from worldstereo.model import make_depth_estimator

        estimator = make_depth_estimator(args.depth_backend, args.depth_model, show_progress=not args.quiet)
    prompt = inp.prompt if args.prompt is None else args.prompt
    config.prompt = prompt
    generator = _make_generator(args, prompt)
    model = WorldStereo(config, depth_estimator=estimator, generator=generator)
    align_to = inp.paths[0][1] if inp.paths else None
    info = model.start(inp.image, depth=inp.depth, camera=inp.camera, align_to=align_to,
                       align_scale=True if args.align_scale else None)
    _note(args, f"depth: {info.message or info.depth_source}")
    if info.scale_message:
        _note(args, info.scale_message)
    _note(args, f"generator: {model.generator_message}")
    filler = getattr(model.generator, "filler", None)
    if filler is not None:
        _note(args, f"fill: {filler.message}")

    if inp.paths:
        paths = [(name, subsample(cams, args.frames)) for name, cams in inp.paths]
        if args.frames is not None and any(len(c) < args.frames for _, c in inp.paths):
            _note(args, f"--frames {args.frames} is more than a camera file holds; every pose is used")
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
        _note(args, f"{name}: frames {_frame_ranges(unknown)} of {len(cameras)} look at space the memory does not "
                    f"know yet (>{UNKNOWN:.0%} holes now); the generator fills them, from the frames before them "
                    "where the path turns gradually")


# ------------------------------------------------------------------------------------------------ scenes
def _cmd_scenes_list(args: argparse.Namespace) -> int:
    from worldstereo.scenes import scene_descriptions

    descriptions = scene_descriptions()
    width = max(map(len, descriptions))
    for name, text in descriptions.items():
        print(f"{name:<{width}}  {text}")
    return 0


def _cmd_scenes_render(args: argparse.Namespace) -> int:
    from worldstereo.atomic import atomic_path
    from worldstereo.exports import write_depth_png, write_image_png
    from worldstereo.formats import write_camera_json
    from worldstereo.imageio_utils import tensor_to_image
    from worldstereo.scenes import get_scene

    scene = get_scene(args.name, seed=args.seed)
    view = scene.start_view(*args.size)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    depth = view.depth[0, 0].detach().cpu().float().numpy()
    write_image_png(out / "image.png", tensor_to_image(view.image))
    write_depth_png(out / "depth.png", depth)
    with atomic_path(out / "depth.npy") as tmp, open(tmp, "wb") as f:
        np.save(f, depth)
    write_camera_json(out / "camera.json", view.camera.to(dtype=torch.float64))
    print(f"{args.name}: {out / 'image.png'}, {out / 'depth.png'}, {out / 'depth.npy'}, {out / 'camera.json'}")
    return 0


def _make_generator(args: argparse.Namespace, prompt: str) -> Any | None:
    """The generator the flags ask for (None = the config's, i.e. the oracle); vace falls back to warp
    with a note when its weights cannot be had, and refuses a CPU unless --force-cpu."""
    if args.generator == "oracle":
        return None
    want_vace = args.generator == "vace" or (args.generator == "auto" and torch.cuda.is_available())
    if want_vace:
        from worldstereo.backends.vace import VaceGenerator
        from worldstereo.hub import WeightsUnavailableError

        device = "cpu" if args.force_cpu and not torch.cuda.is_available() else "auto"
        try:
            return VaceGenerator(prompt=prompt, num_inference_steps=args.vace_steps, offload=args.vace_offload,
                                 device=device, force_cpu=args.force_cpu)
        except WeightsUnavailableError as err:
            _note(args, f"vace unavailable, using warp: {err}")
    from worldstereo.backends.fill import make_filler
    from worldstereo.backends.generators import FRAME_GENERATORS

    return FRAME_GENERATORS.create("warp", filler=make_filler(args.fill, show_progress=not args.quiet))


# ------------------------------------------------------------------------------------------------ download-weights
def _cmd_download_weights(args: argparse.Namespace) -> int:
    from worldstereo.backends.depth_moge import MOGE_DEFAULT_REPOS, default_device, resolve_moge_weights

    if args.device == "all":
        repos = list(dict.fromkeys(MOGE_DEFAULT_REPOS.values()))
    else:
        device = default_device() if args.device == "auto" else args.device
        repos = [MOGE_DEFAULT_REPOS[device]]
    repos += [r for r in args.depth_model if r not in repos]
    for repo in repos:
        path = resolve_moge_weights(repo, show_progress=not args.quiet)
        print(f"MoGe-2 {repo}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if not args.no_fill:
        from worldstereo import hub
        from worldstereo.backends.fill import lama_source

        source = lama_source()
        if isinstance(source, Path):
            print(f"LaMa: local file {source.name} (WORLDSTEREO_LAMA), nothing to download")
        else:
            path = hub.fetch_file(*source, show_progress=not args.quiet)
            print(f"LaMa {'/'.join(source)}: {path} ({path.stat().st_size / 2**20:.1f} MiB)")
    if "vace" in args.generator:
        from worldstereo.backends.vace import download_vace_weights, vace_source

        repo = vace_source()
        if Path(repo).is_dir():
            print(f"Wan2.1-VACE: local folder {Path(repo).name} (WORLDSTEREO_VACE_MODEL), nothing to download")
        else:
            print(f"Wan2.1-VACE {repo}: {download_vace_weights(repo)}")
    return 0


# ------------------------------------------------------------------------------------------------ entry point
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


if __name__ == "__main__":
    sys.exit(main())
