"""``worldstereo panorama split PANO --out DIR``: an equirectangular image -> the official 27-view bank layout."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from worldstereo.cli.common import CliError, Parser

__all__ = ["add_panorama_parser", "panorama_split_command"]


def add_panorama_parser(sub: Any, common: argparse.ArgumentParser) -> None:
    """The ``panorama`` subcommand (``split``)."""
    p = sub.add_parser("panorama", parents=[common], help="panorama tools: split a panorama into the official pano bank",
                       description="Panorama tools. 'split' writes the official bank layout of an equirectangular image.")
    psub = p.add_subparsers(dest="panorama_command", parser_class=Parser, metavar="{split}", required=True)
    s = psub.add_parser(
        "split", parents=[common], help="write the 27 bank views, cameras.json and depths/ (when --depth is given)",
        description="Split an equirectangular panorama (2:1; world up +Z, centre column along -X) into the official "
                    "bank of 27 views at 832x480 (120 x 90 degrees): DIR/images/NNNN.png, DIR/cameras.json "
                    "({'0000': {'intrinsic', 'extrinsic'}, ...}, world-to-camera, OpenCV axes) and, with --depth "
                    "(the panorama's range per pixel), DIR/depths/NNNN.png (16-bit camera z in millimetres).",
    )
    s.add_argument("panorama", type=Path, metavar="PANO", help="equirectangular image (2:1)")
    s.add_argument("--out", type=Path, required=True, metavar="DIR", help="bank folder to write")
    s.add_argument("--depth", type=Path, metavar="D",
                   help="the panorama's range from the centre per pixel: 16-bit PNG in millimetres, .npy or .exr")
    s.add_argument("--overwrite", action="store_true", help="allow writing into a non-empty folder")
    s.set_defaults(func=panorama_split_command)


def panorama_split_command(args: argparse.Namespace) -> int:
    """Run ``worldstereo panorama split``; every input is checked before anything is written."""
    import torch

    from worldstereo.backends.depth_file import load_depth_map
    from worldstereo.panorama.bank import official_bank_cameras, split_panorama
    from worldstereo.panorama.equirect import range_to_z, working_panorama_size
    from worldstereo.panorama.files import read_panorama_input, write_pano_bank

    out: Path = args.out
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not args.overwrite)):
        raise CliError(f"--out {str(out)!r} is not an empty folder; pass --overwrite to write into it")
    image, _ = read_panorama_input(args.panorama)
    if image is None:
        raise CliError(f"{str(args.panorama)!r} is a folder; 'panorama split' takes an equirectangular image")
    h, w = image.shape[:2]
    rng = None
    if args.depth is not None:
        rng = load_depth_map(args.depth)
        if rng.shape != (h, w):
            raise CliError(f"depth {args.depth.name!r} is {rng.shape[1]}x{rng.shape[0]} but the panorama is {w}x{h}")
    wp, hp = working_panorama_size(w, h)
    if (wp, hp) != (w, h):
        import cv2

        image = cv2.resize(image, (wp, hp), interpolation=cv2.INTER_AREA)
        if rng is not None:
            rng = cv2.resize(rng, (wp, hp), interpolation=cv2.INTER_NEAREST)
    cams = official_bank_cameras()
    views = split_panorama(image, cams)
    depths = None
    if rng is not None:
        ranges = torch.from_numpy(split_panorama(np.ascontiguousarray(rng, np.float32), cams, nearest=True))
        depths = range_to_z(ranges, cams._camera_directions()[0].float()).numpy()
    root = write_pano_bank(out, views, cams, depths)
    print(f"{len(cams)} views -> {root / 'images'}, {root / 'cameras.json'}" + (f", {root / 'depths'}" if depths is not None else ""))
    return 0
