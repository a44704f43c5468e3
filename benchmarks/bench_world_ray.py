"""A panorama world's round of 4 walks on Ray with 2 workers against ``--no-ray``; the process tree's peak memory.

``worldstereo world --panorama`` of the synthetic room (1024 x 512, written before the clock starts), the default
plan (one round of 4 walks out and back, 21 frames each) at 416 x 240, ``warp`` + Telea, the offline prior, no mesh.
Figure: the round's time (``world.json``'s ``seconds``: the rounds, with their files and the fold) with
``--workers 2``; reference: the same with ``--no-ray`` (ratio = speed-up; aim: at least 1.5x). Also each command's
wall time (Python's start, the model's start, Ray's start-up and the exports included) and, in runs of their own
(sampling slows a 2-core machine), the largest sum of proportional set sizes over the process tree (aim: 2 workers
at most 1.6x ``--no-ray``).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import BenchResult, run_command

OPTIONS = ["--size", "416x240", "--frames", "21", "--fill", "telea", "--depth-backend", "prior", "--no-mesh",
           "--quiet"]


def _world(pano: Path, extra: list[str], memory: bool = False) -> tuple[float, float, float]:
    """(round seconds, wall seconds, peak PSS MB or 0)."""
    with tempfile.TemporaryDirectory() as d:
        cmd = [sys.executable, "-m", "worldstereo.cli", "world", "--panorama", str(pano), "--out", d + "/w", *OPTIONS,
               *extra]
        wall, peak, rc = run_command(cmd, memory)
        if rc != 0:
            raise RuntimeError(f"world {extra} failed with exit {rc}")
        meta = json.loads((Path(d) / "w" / "world.json").read_text())
    return float(meta["seconds"]), wall, peak


def run() -> BenchResult:
    from worldstereo.exports import write_image_png
    from worldstereo.panorama.synthetic import render_panorama

    with tempfile.TemporaryDirectory() as d:
        pano = Path(d) / "room.png"
        write_image_png(pano, render_panorama("room", 1024).image)
        here_round, here_wall, _ = _world(pano, ["--no-ray"])
        two_round, two_wall, _ = _world(pano, ["--workers", "2"])
        _, _, here_mb = _world(pano, ["--no-ray"], memory=True)
        _, _, two_mb = _world(pano, ["--workers", "2"], memory=True)
    return BenchResult(
        name="world_ray",
        value=two_round,
        unit="s",
        reference="the same round with --no-ray",
        reference_value=here_round,
        ratio=here_round / two_round,
        aim=">= 1.5x; peak memory <= 1.6x --no-ray",
        aim_ratio=1.5,
        extra=(f"whole command {two_wall:.1f} s on 2 workers, {here_wall:.1f} s --no-ray ({here_wall / two_wall:.2f}x); "
               f"peak PSS {two_mb:.0f} MB on 2 workers, {here_mb:.0f} MB --no-ray ({two_mb / here_mb:.2f}x)"),
    )
