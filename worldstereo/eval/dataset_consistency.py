"""How well a world's dataset agrees with itself, as a splat or NeRF trainer would see it.

For every ordered pair of frames ``(i, j)`` whose views overlap, frame ``i``'s pixels with known depth
(and, where the dataset has masks, a mask value of 255) are lifted to world points with its depth file
and projected into frame ``j``. Where ``j`` also knows the depth at that pixel:

* **colour difference**: where the two depths agree (within ``depth_tolerance``, relative), the mean
  absolute RGB difference of the two frames' pixels, in 1/255 units (median over the pooled pixels);
* **floating share**: the share of those overlapping pixels that lie more than ``depth_tolerance`` in
  front of ``j``'s surface (``i`` puts something where ``j`` sees through).

Both are pooled over every pixel of a kind of pair, and the floating share is also given per pair (its 90th
percentile and maximum over the pairs: one contradicting pair hides in a pool of agreeing ones). Pairs are
pooled by kind: ``within`` (two frames of one trajectory), ``across`` (frames of two different
trajectories) and ``views`` (a generated frame against an input view). A world whose trajectories
contradict each other shows ``across`` figures well above ``within``.

``worldstereo eval dataset D/world`` prints them (``--json FILE`` writes them).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from worldstereo.world.dataset import INPUT_GROUPS, DatasetFrame, read_dataset

__all__ = ["ConsistencyFigures", "DatasetConsistency", "add_dataset_arguments", "dataset_command", "dataset_consistency"]

#: relative depth difference under which two frames see the same surface
DEPTH_TOLERANCE = 0.02
#: a pair counts when at least this share of the first frame's sampled pixels land on known depth in the second
MIN_OVERLAP = 0.05


@dataclass
class ConsistencyFigures:
    """Pooled figures of one kind of pair.

    Attributes:
        pairs: ordered pairs of frames that overlap.
        colour_difference: median |RGB difference| (1/255, mean over the channels) where the two frames' depths agree.
        colour_mean: the mean of the same.
        floating_share: share of overlapping pixels more than the tolerance in front of the other frame's surface.
        floating_p90, floating_max: the 90th percentile and the maximum of the floating share over the pairs.
        agreeing_pixels: pixels behind ``colour_difference``; overlapping_pixels: behind ``floating_share``.
    """

    pairs: int = 0
    colour_difference: float = float("nan")
    colour_mean: float = float("nan")
    floating_share: float = float("nan")
    floating_p90: float = float("nan")
    floating_max: float = float("nan")
    agreeing_pixels: int = 0
    overlapping_pixels: int = 0


@dataclass
class DatasetConsistency:
    """Figures per kind of pair (``within``, ``across``, ``views``) and the frames read."""

    frames: int
    within: ConsistencyFigures = field(default_factory=ConsistencyFigures)
    across: ConsistencyFigures = field(default_factory=ConsistencyFigures)
    views: ConsistencyFigures = field(default_factory=ConsistencyFigures)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def lines(self) -> list[str]:
        out = [f"{self.frames} frames"]
        for kind in ("within", "across", "views"):
            f: ConsistencyFigures = getattr(self, kind)
            out.append(f"{kind:>6}: {f.pairs:5d} pairs, colour difference {f.colour_difference:5.2f}/255 (mean "
                       f"{f.colour_mean:5.2f}) where depths agree, {100 * f.floating_share:5.2f}% floating in front of the other frame's surface "
                       f"(per pair: 90th percentile {100 * f.floating_p90:5.2f}%, max {100 * f.floating_max:5.2f}%)")
        return out


@dataclass
class _Loaded:
    group: str
    points: torch.Tensor  # (P, 3) world points of the sampled pixels with known depth (and mask 255)
    colors: torch.Tensor  # (P, 3) in [0, 255]
    K: torch.Tensor
    w2c: torch.Tensor
    size: tuple[int, int]
    depth: torch.Tensor  # (H, W), 0 where unknown or masked out
    image: torch.Tensor  # (H, W, 3) in [0, 255]


def _load(frame: DatasetFrame, stride: int) -> _Loaded:
    from PIL import Image

    from worldstereo.backends.depth_file import load_depth_map

    image = torch.from_numpy(np.asarray(Image.open(frame.image_path).convert("RGB"), dtype=np.float32))
    depth = torch.zeros(image.shape[:2])
    if frame.depth_path is not None and frame.depth_path.is_file():
        try:
            depth = torch.from_numpy(load_depth_map(frame.depth_path)).float()
        except ValueError:  # a depth file with no positive value: nothing known
            pass
    if frame.mask_path is not None:
        mask = np.asarray(Image.open(frame.mask_path).convert("L")) >= 128
        depth = torch.where(torch.from_numpy(mask), depth, torch.zeros_like(depth))
    cam = frame.camera.to(dtype=torch.float32)
    sub = depth[stride // 2 :: stride, stride // 2 :: stride]
    keep = sub > 0
    world = cam.unproject(depth.view(1, 1, *depth.shape))[0][stride // 2 :: stride, stride // 2 :: stride][keep]
    colors = image[stride // 2 :: stride, stride // 2 :: stride][keep]
    return _Loaded(frame.group, world, colors, cam.K[0], cam.w2c[0], (cam.width, cam.height), depth, image)


def _pair(a: _Loaded, b: _Loaded, tol: float) -> tuple[torch.Tensor, int, int] | None:
    """(colour differences where depths agree, floating pixels, overlapping pixels) of ``a`` seen by ``b``."""
    if not a.points.shape[0]:
        return None
    cam = a.points @ b.w2c[:3, :3].T + b.w2c[:3, 3]
    z = cam[:, 2]
    front = z > 1e-6
    uv = cam[:, :2] / z.clamp_min(1e-6).unsqueeze(1) * b.K.diagonal()[:2] + b.K[:2, 2]
    w, h = b.size
    u, v = uv[:, 0].floor().long(), uv[:, 1].floor().long()
    inside = front & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    u, v, z = u[inside], v[inside], z[inside]
    d = b.depth[v, u]
    known = d > 0
    if int(known.sum()) < MIN_OVERLAP * a.points.shape[0]:
        return None
    u, v, z, d = u[known], v[known], z[known], d[known]
    colors = a.colors[inside][known]
    agree = (z - d).abs() <= tol * d
    floating = int((z < (1.0 - tol) * d).sum())
    diff = (colors[agree] - b.image[v[agree], u[agree]]).abs().mean(dim=1)
    return diff, floating, int(known.sum())


def dataset_consistency(folder: str | Path, stride: int = 2, depth_tolerance: float = DEPTH_TOLERANCE) -> DatasetConsistency:
    """Figures of a dataset folder (``transforms.json`` and its files; see the module docstring).

    Args:
        folder: the dataset (``D/world``).
        stride: every ``stride``-th pixel of each frame is lifted (both ways).
        depth_tolerance: relative depth difference under which two frames see the same surface.
    """
    frames = read_dataset(folder)
    loaded = [_load(f, stride) for f in frames]
    pools: dict[str, tuple[list[torch.Tensor], list[float], list[int], list[int]]] = {
        k: ([], [], [0], [0]) for k in ("within", "across", "views")}
    for i, a in enumerate(loaded):
        for j, b in enumerate(loaded):
            if i == j:
                continue
            a_input, b_input = a.group in INPUT_GROUPS, b.group in INPUT_GROUPS
            if a_input and b_input:
                continue  # the input views among themselves: not generated
            kind = "views" if a_input or b_input else "within" if a.group == b.group else "across"
            got = _pair(a, b, depth_tolerance)
            if got is None:
                continue
            diffs, floating, overlap = got
            pool = pools[kind]
            pool[0].append(diffs)
            pool[1].append(floating / overlap)
            pool[2][0] += floating
            pool[3][0] += overlap
    out = DatasetConsistency(len(frames))
    nan = float("nan")
    for kind, (diffs, shares, floating, overlap) in pools.items():
        every = torch.cat(diffs) if diffs else torch.zeros(0)
        setattr(out, kind, ConsistencyFigures(
            len(shares), float(every.median()) if every.numel() else nan, float(every.mean()) if every.numel() else nan,
            floating[0] / overlap[0] if overlap[0] else nan,
            float(np.percentile(shares, 90)) if shares else nan, max(shares, default=nan),
            int(every.numel()), overlap[0]))
    return out


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dataset", type=Path, metavar="D", help="a world's dataset folder (D/world, with transforms.json)")
    parser.add_argument("--stride", type=int, default=2, help="lift every STRIDE-th pixel (default 2)")
    parser.add_argument("--json", type=Path, default=None, metavar="FILE", help="also write the figures as JSON")


def dataset_command(args: argparse.Namespace) -> int:
    from worldstereo.atomic import write_text_atomic

    if not (args.dataset / "transforms.json").is_file():
        raise ValueError(f"no transforms.json in {str(args.dataset)!r}: give a world's dataset folder (D/world)")
    if args.stride < 1:
        raise ValueError(f"--stride must be at least 1, got {args.stride}")
    result = dataset_consistency(args.dataset, stride=args.stride)
    for line in result.lines():
        print(line)
    if args.json is not None:
        write_text_atomic(args.json, json.dumps(result.to_json(), indent=1) + "\n")
    return 0
