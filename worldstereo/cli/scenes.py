"""``worldstereo scenes``: list the procedural scenes, or render one's start view."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldstereo.cli.common import Parser, parse_size

__all__ = ["add_scenes_parser"]


def add_scenes_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``scenes`` subcommand (``list``, ``render``)."""
    s = sub.add_parser("scenes", parents=[common], help="list procedural scenes or render one's start view",
                       description="List the procedural scenes, or render a scene's start view.")
    s.set_defaults(func=scenes_list_command)
    ssub = s.add_subparsers(dest="scenes_command", parser_class=Parser, metavar="{list,render}")
    ssub.add_parser("list", parents=[common], help="list scenes (the default)").set_defaults(func=scenes_list_command)
    r = ssub.add_parser(
        "render", parents=[common], help="write a scene's start view",
        description="Write image.png, depth.png (16-bit, millimetres), depth.npy (float32 scene units) and "
                    "camera.json (official, renders kind) of a scene's start view.",
    )
    r.add_argument("name", help="scene name")
    r.add_argument("--out", type=Path, required=True, metavar="DIR", help="output folder")
    r.add_argument("--size", type=parse_size, default=(512, 384), metavar="WxH", help="image size (default 512x384)")
    r.add_argument("--seed", type=int, default=0, help="texture seed")
    r.set_defaults(func=scenes_render_command)


def scenes_list_command(args: argparse.Namespace) -> int:
    from worldstereo.scenes import scene_descriptions

    descriptions = scene_descriptions()
    width = max(map(len, descriptions))
    for name, text in descriptions.items():
        print(f"{name:<{width}}  {text}")
    return 0


def scenes_render_command(args: argparse.Namespace) -> int:
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
