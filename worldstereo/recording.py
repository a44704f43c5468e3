"""A rerun recording of an exploration's memories, written from its history (``worldstereo generate/world ...
--rerun FILE.rrd``; open it with ``rerun FILE.rrd``).

One timeline, ``frame`` (the global frame id; the history's base frame first). Per frame:

* ``world/memory``: the GGM right after the frame (:meth:`MemoryHistory.state_at`), coloured by provenance (the
  path or trajectory that added each point: one colour per path, the start's points grey), and
  ``world/memory_rgb`` in the points' own colours; both an even subset of at most :data:`MAX_POINTS`;
* ``world/cameras/<path>``: the frame's camera (a pinhole in OpenCV axes at its pose), with its output image;
* ``layers/render``, ``layers/holes``, ``layers/ssm``, ``layers/fill``, ``layers/output``, ``layers/disagreement``:
  the frame's layers at :data:`~worldstereo.history.LAYER_SIDE` pixels;
* ``ssm/references``: the stored views its pixels came from and the share of attention each got (text), and
  ``ssm/attention``: those shares over the bank's keyframes (a bar chart);
* ``stats/points``, ``stats/added``, ``stats/merged``, ``stats/evicted``, ``stats/ssm_tokens``,
  ``stats/disagreement``: the memory statistics as scalars.

``rerun-sdk`` (0.41) is an optional extra (``pip install -e .[rerun]``: a 170 MB wheel with its native viewer);
without it, :func:`require_rerun` gives one error naming the extra.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from worldstereo.atomic import atomic_path
from worldstereo.history import MemoryHistory

__all__ = ["MAX_POINTS", "RerunMissingError", "require_rerun", "write_recording"]

#: most points of a frame's cloud in the recording (an even subset; the point count is logged whole)
MAX_POINTS = 100_000
#: the start's points, and the paths' colours in turn
START_COLOUR = (150, 150, 150)
PATH_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                (227, 119, 194), (188, 189, 34), (23, 190, 207)]


class RerunMissingError(RuntimeError):
    """rerun-sdk is not installed (it is an optional extra)."""


def require_rerun() -> Any:
    """The ``rerun`` module, or one :class:`RerunMissingError` naming the extra to install."""
    try:
        import rerun
    except ImportError:
        raise RerunMissingError("--rerun needs rerun-sdk, an optional extra (a 170 MB wheel with its viewer): "
                                "pip install -e .[rerun]") from None
    return rerun


def _subset(n: int, limit: int) -> np.ndarray:
    return np.arange(n) if n <= limit else np.linspace(0, n - 1, limit).round().astype(np.int64)


def _provenance_colours(source_frame: np.ndarray, frame_path: dict[int, int]) -> np.ndarray:
    """(N, 3) uint8: the colour of the path that added each point (the start's grey)."""
    out = np.tile(np.array(START_COLOUR, np.uint8), (len(source_frame), 1))
    for fid, path in frame_path.items():
        out[source_frame == fid] = PATH_COLOURS[path % len(PATH_COLOURS)]
    return out


def write_recording(history: MemoryHistory, path: str | os.PathLike, application: str = "worldstereo",
                    max_points: int = MAX_POINTS) -> Path:
    """Write ``history`` as a rerun recording at ``path`` (atomically; see the module docstring).

    Raises:
        RerunMissingError: rerun-sdk is not installed.
        ValueError: the history is off or empty.
    """
    rr = require_rerun()
    if history.base is None:
        raise ValueError("the history is off (history_mb=0) or nothing was started: nothing to record")
    out = Path(path)
    frame_path = {e.frame_id: e.path_index for e in history.entries}
    frames = [history.base.frame_id] + [e.frame_id for e in history.entries if e.frame_id != history.base.frame_id]
    with atomic_path(out) as tmp:
        rec = rr.RecordingStream(application)
        rec.save(str(tmp))
        rec.log("world", rr.ViewCoordinates.RDF, static=True)
        for fid in frames:
            state = history.state_at(fid)
            e = state.entry
            rec.set_time("frame", sequence=int(fid))
            pts = state.points.numpy()
            keep = _subset(len(pts), max_points)
            rgb = (np.clip(state.colors.numpy()[keep], 0, 1) * 255 + 0.5).astype(np.uint8)
            rec.log("world/memory", rr.Points3D(pts[keep], colors=_provenance_colours(state.source_frame.numpy()[keep],
                                                                                       frame_path)))
            rec.log("world/memory_rgb", rr.Points3D(pts[keep], colors=rgb))
            rec.log("stats/points", rr.Scalars(float(len(pts))))
            rec.log("stats/ssm_tokens", rr.Scalars(float(state.book.tokens.sum())))
            if e is None:
                continue
            name = history.path_name(e.path_index).replace(" ", "_")
            c2w = np.linalg.inv(e.w2c)
            cam = f"world/cameras/{name}"
            rec.log(cam, rr.Transform3D(translation=c2w[:3, 3], mat3x3=c2w[:3, :3]))
            rec.log(cam, rr.Pinhole(image_from_camera=e.K, width=e.width, height=e.height,
                                    camera_xyz=rr.ViewCoordinates.RDF))
            if e.layers is not None:
                lay = e.layers
                rec.log(f"{cam}/image", rr.Image(lay.output))
                rec.log("layers/output", rr.Image(lay.output))
                rec.log("layers/fill", rr.SegmentationImage(lay.fill))
                if lay.render is not None:
                    rec.log("layers/render", rr.Image(lay.render))
                    rec.log("layers/holes", rr.Image((lay.holes * 255).astype(np.uint8)))
                    rec.log("layers/disagreement", rr.Image(lay.disagreement))
                if lay.ssm is not None:
                    rec.log("layers/ssm", rr.Image((lay.ssm * 255).astype(np.uint8)))
            refs = ", ".join(f"frame {k}: {v:.2f}" for k, v in sorted(e.attention.items(), key=lambda kv: -kv[1]))
            rec.log("ssm/references", rr.TextLog(f"frame {fid} ({history.path_name(e.path_index)}) drew on "
                                                 f"{e.references or 'no stored view'}; attention shares: {refs or '-'}"))
            ids = [int(i) for i in state.book.frame_ids]
            rec.log("ssm/attention", rr.BarChart(np.array([e.attention.get(i, 0.0) for i in ids], np.float32)))
            for key, stat in (("added", "num_added"), ("merged", "num_merged"), ("evicted", "num_evicted")):
                rec.log(f"stats/{key}", rr.Scalars(float(e.stats.get(stat, 0))))
            if not math.isnan(e.disagreement):
                rec.log("stats/disagreement", rr.Scalars(float(e.disagreement)))
        rec.flush()
        del rec
    return out
