"""``worldstereo world``: a plan of trajectories in rounds through one set of memories, one aligned point
cloud and a 3DGS-ready dataset (layout in :mod:`worldstereo.world.runner`)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from worldstereo.camera import CameraParameters
from worldstereo.cli.camera_files import read_camera_file
from worldstereo.cli.common import (
    CliError,
    add_device_argument,
    add_ray_arguments,
    add_rerun_argument,
    check_rerun_argument,
    note,
    parse_size,
    positive_int,
    write_rerun,
)
from worldstereo.splats.surfels import DEFAULT_MAX_SPLATS
from worldstereo.threads import available_cores
from worldstereo.trajectory import subsample

__all__ = ["RAY_WORLD_MIN_CORES", "add_world_parser", "world_command"]

#: cores from which a world's rounds go to an embedded Ray by default (below, this process runs them on every core:
#: 2 workers on 2 cores measured 0.89x of it for a round, 0.78x for the whole command; see the README)
RAY_WORLD_MIN_CORES = 4


def add_world_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``world`` subcommand."""
    w = sub.add_parser(
        "world", parents=[common], formatter_class=argparse.RawDescriptionHelpFormatter,
        help="build a world: a plan of trajectories in rounds, one point cloud, a 3DGS-ready dataset",
        description=(
            "Run a plan of trajectories in rounds through one set of memories: every trajectory of a round\n"
            "starts from the memories the round began with, and its frames join them, in plan order, before\n"
            "the next round. Default plans: a panorama walks out and back along --trajectories directions\n"
            "(default 4); an example folder runs its official paths (eloop, then up, right, left); a photo the\n"
            "same moves as presets. A round whose trajectories would invent content the others see is split\n"
            "into successive rounds (a note says so). --plan plan.json runs your own as given (format in the\n"
            "README; D/plan.json is the plan that ran). A rerun with the same input and settings resumes where\n"
            "the last one stopped.\n\n"
            "Outputs in D/world/: the input views and every frame whose pose is new: images/, depths/ (16-bit\n"
            "millimetres, 0 = unknown or guessed), masks/ (0 where a fallback filled), transforms.json\n"
            "(nerfstudio), pointcloud.ply, splats.ply (3D Gaussian splats of the memories), sparse/0/ (a COLMAP\n"
            "model) and mesh.glb (TSDF fusion of the depths); D/world.json says what is done."
        ),
    )
    src = w.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", type=Path, help="input photo")
    src.add_argument("--panorama", type=Path, metavar="PATH",
                     help="360-degree equirectangular image (2:1), pano-bank folder, or example folder with pano_bank/")
    src.add_argument("--example", type=Path, metavar="DIR",
                     help="official example folder, or a shipped example's name (bicycle...): its paths make the plan")
    w.add_argument("--depth", type=Path, metavar="D", help="depth of --image (camera z) or --panorama (range per pixel)")
    w.add_argument("--plan", type=Path, metavar="PLAN", help="plan.json to run instead of the default plan")
    w.add_argument("--trajectories", type=positive_int, default=None, metavar="N",
                   help="trajectories of the default plan (panorama: directions, default 4; photo/example: at most 4)")
    w.add_argument("--frames", type=positive_int, default=None, metavar="F", help="frames per trajectory (default 21)")
    w.add_argument("--size", type=parse_size, default=(512, 384), metavar="WxH", help="working size (default 512x384)")
    w.add_argument("--out", type=Path, required=True, metavar="D", help="output folder (a rerun resumes it)")
    w.add_argument("--depth-backend", choices=("auto", "moge", "prior"), default="auto",
                   help="depth when none is given: auto = MoGe-2 when it can be had, else the offline prior")
    w.add_argument("--depth-model", metavar="REPO_OR_PATH", default=None, help="MoGe-2 weights (see 'generate')")
    w.add_argument("--fill", choices=("auto", "lama", "telea", "none"), default="auto", help="hole fill of warp frames")
    w.add_argument("--generator", choices=("auto", "warp", "vace"), default="auto", help="frame generator")
    w.add_argument("--prompt", default=None, metavar="TEXT", help="text prompt of the vace generator")
    w.add_argument("--vace-steps", type=int, default=30, metavar="N", help="denoising steps per vace clip")
    w.add_argument("--vace-offload", action="store_true", help="vace: model CPU offload")
    w.add_argument("--force-cpu", action="store_true", help="let vace run on a CPU (tests, tiny models)")
    add_device_argument(w)
    w.add_argument("--seed", type=int, default=0, help="random seed")
    add_ray_arguments(w)
    add_rerun_argument(w)
    w.add_argument("--max-splats", type=positive_int, default=DEFAULT_MAX_SPLATS, metavar="N",
                   help=f"budget of D/world/splats.ply (default {DEFAULT_MAX_SPLATS:,}); below the point count "
                        "neighbours merge into larger discs")
    w.add_argument("--no-mesh", action="store_true", help="skip D/world/mesh.glb (TSDF fusion of the depths)")
    w.add_argument("--quiet", action="store_true", help="no progress bars and no notes")
    w.set_defaults(func=world_command, align_scale=False)


def _inputs(args: argparse.Namespace) -> dict[str, Any]:
    """The input as a dict: kind, source, image, depth, camera, bank cameras, official paths, prompt."""
    from worldstereo.cli.generate import load_depth_for
    from worldstereo.imageio_utils import load_image

    if args.panorama is not None:
        from worldstereo.panorama.files import read_panorama_input

        image, bank = read_panorama_input(args.panorama)
        if bank is not None:
            if args.depth is not None:
                raise CliError("a pano bank brings its own depths/ (or none); do not give --depth")
            return {"kind": "bank", "source": f"pano bank {bank.root}", "image": bank.images, "depth": bank.depths,
                    "cameras": bank.cameras, "paths": [], "prompt": ""}
        return {"kind": "panorama", "source": f"panorama {args.panorama}", "image": image,
                "depth": load_depth_for(args, image), "paths": [], "prompt": ""}
    if args.example is not None:
        from worldstereo.backends.vace import caption_from_prompt
        from worldstereo.examples import resolve_example
        from worldstereo.formats import read_example_folder
        from worldstereo.panorama.files import find_bank_folder

        try:
            args.example = resolve_example(args.example)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        if find_bank_folder(args.example) is not None:
            args.panorama = args.example
            return _inputs(argparse.Namespace(**{**vars(args), "example": None}))
        ex = read_example_folder(args.example)
        files = [(p.name, p.info.source) for p in ex.paths]
        first = ex.paths[0].cameras
        if ex.paths[0].info.kind == "images":
            first = CameraParameters(first.intrinsics, first.extrinsics, ex.image.shape[1], ex.image.shape[0])
        return {"kind": "image", "source": f"example {ex.root}", "image": ex.image, "depth": load_depth_for(args, ex.image),
                "camera": first[0], "align_to": first, "paths": files, "prompt": caption_from_prompt(ex.prompt)}
    image = load_image(args.image)
    return {"kind": "image", "source": f"image {args.image}", "image": image, "depth": load_depth_for(args, image),
            "camera": None, "paths": [], "prompt": ""}


def _plan(args: argparse.Namespace, inp: dict[str, Any]):
    from worldstereo.world.plan import PlanError, WorldPlan, example_plan, panorama_plan, photo_plan

    frames = args.frames or 21
    try:
        if args.plan is not None:
            plan = WorldPlan.load(args.plan)
            return replace(plan, frames=args.frames) if args.frames else plan
        if inp["kind"] in ("panorama", "bank"):
            return panorama_plan(args.trajectories or 4, frames)
        if inp["paths"]:
            return example_plan(inp["paths"][: args.trajectories or 4], args.frames)
        return photo_plan(frames, min(args.trajectories or 4, 4))
    except PlanError as exc:
        raise CliError(str(exc)) from None


def world_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo world`` from parsed arguments; returns the exit status."""
    from worldstereo.backends.warm import warm
    from worldstereo.cli.generate import make_generator_from_args
    from worldstereo.model import WorldStereo, WorldStereoConfig, make_depth_estimator
    from worldstereo.world.extras import ExtrasOptions
    from worldstereo.world.runner import WorldError, build_world

    if args.out.exists() and not args.out.is_dir():
        raise CliError(f"--out {str(args.out)!r} exists and is not a folder")
    check_rerun_argument(args)
    inp = _inputs(args)
    plan = _plan(args, inp)
    w, h = args.size
    fingerprint = {"input": inp["source"], "size": [w, h], "depth_backend": args.depth_backend,
                   "depth": str(args.depth) if args.depth else None, "generator": args.generator, "fill": args.fill,
                   "seed": args.seed}
    image_size = (inp["image"].shape[-2], inp["image"].shape[-3]) if inp["kind"] == "bank" else \
        (inp["image"].shape[1], inp["image"].shape[0])

    built: list[WorldStereo] = []  # the model the world ran in (its history goes to --rerun)

    prompt = inp["prompt"] if args.prompt is None else args.prompt

    def make_config() -> WorldStereoConfig:
        return WorldStereoConfig(width=w, height=h, depth_backend=args.depth_backend, depth_model=args.depth_model,
                                 generator="warp" if args.generator == "auto" and not torch.cuda.is_available()
                                 else args.generator, fill=args.fill, prompt=prompt, device=args.device)

    def make_model(start: bool) -> WorldStereo:
        torch.manual_seed(args.seed)
        config = make_config()
        estimator = None
        if start and inp["depth"] is None:
            estimator = warm(("depth", args.depth_backend, args.depth_model, config.model_device()),
                             lambda: make_depth_estimator(args.depth_backend, args.depth_model, config.model_device(),
                                                          show_progress=not args.quiet))
        model = WorldStereo(config, depth_estimator=estimator, generator=make_generator_from_args(args, prompt))
        built.append(model)
        if not start:
            return model
        if inp["kind"] == "panorama":
            info = model.start_panorama(inp["image"], depth=inp["depth"])
        elif inp["kind"] == "bank":
            info = model.start_views(inp["image"], inp["cameras"], inp["depth"])
        else:
            info = model.start(inp["image"], depth=inp["depth"], camera=inp.get("camera"), align_to=inp.get("align_to"))
        note(args, f"depth: {info.message or info.depth_source}")
        note(args, f"generator: {model.generator_message}")
        return model

    def read_cameras(t, frames: int) -> CameraParameters:
        return subsample(read_camera_file(plan.camera_path(t), image_size=image_size).cameras, frames)

    executor, factory = None, make_model
    parallel = any(len(r) > 1 for r in plan.rounds)  # a round of one trajectory gains nothing from Ray
    cores = available_cores()
    if parallel and not args.no_ray and not (args.ray_address or args.workers) and cores < RAY_WORLD_MIN_CORES:
        note(args, f"the rounds run in this process: {cores} cores (on Ray a round of 4 walks took 0.9x the time of "
                   "this process on 2 cores; --workers N runs them on Ray)")
    elif parallel and not args.no_ray:
        from worldstereo.world.distributed import connect, ray_executor, warm_up

        # a new world starts its model (depth, the start's memories) while Ray starts, and Ray's workers get ready
        # meanwhile (imports, generator, compiled kernels); Ray starts in this thread (it must: signals)
        starting = None if (args.out / "world.json").is_file() else _Background(lambda: make_model(True))
        ray = connect(args.ray_address, args.workers)
        warming = warm_up(ray, make_config(), args.workers)  # noqa: F841 - (held while they run)
        executor = ray_executor(ray, args.workers, seed=args.seed)
        if starting is not None:
            factory = _first_call_returns(make_model, starting.result())
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        summary = build_world(plan, args.out, fingerprint, factory, read_cameras, progress=not args.quiet,
                              log=None if args.quiet else (lambda m: print(f"note: {m}", file=sys.stderr)),
                              executor=executor, split_rounds=args.plan is None,
                              extras=ExtrasOptions(args.max_splats, mesh=not args.no_mesh))
    except WorldError as exc:
        raise CliError(str(exc)) from None
    write_rerun(args, built[-1])
    repeated = f" ({summary.skipped} repeating a pose left out)" if summary.skipped else ""
    extras = ", splats.ply, sparse/0" + ("" if args.no_mesh else ", mesh.glb")
    print(f"world: {summary.frames} frames{repeated}, {summary.points:,} points -> {summary.dataset / 'transforms.json'}, "
          f"{summary.dataset / 'pointcloud.ply'}{extras}")
    return 0


class _Background:
    """``fn()`` on a daemon thread; :meth:`result` waits and returns its value or raises its exception."""

    def __init__(self, fn: Any) -> None:
        import threading

        self._box: dict[str, Any] = {}

        def run() -> None:
            try:
                self._box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                self._box["error"] = exc

        self._thread = threading.Thread(target=run, name="world-start", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        while self._thread.is_alive():
            self._thread.join(0.1)  # (a short wait: Ctrl-C reaches the main thread)
        if "error" in self._box:
            raise self._box["error"]
        return self._box["value"]


def _first_call_returns(make_model: Any, started: Any) -> Any:
    """``make_model`` whose first ``make_model(True)`` returns the model ``started`` already."""
    box = [started]

    def make(start: bool) -> Any:
        if start and box:
            return box.pop()
        return make_model(start)

    return make
