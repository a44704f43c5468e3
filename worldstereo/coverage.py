"""Coverage guard: how much of each frame of a path the memories already know, before generating.

Each camera of the path renders the Global-Geometric Memory at low resolution (the same gap-free
splat the ``warp`` generator uses); the share of pixels no point reaches is the frame's hole
share. Frames are labelled ``known`` (hole share below :data:`PARTLY_KNOWN`), ``partly``
(below :data:`UNKNOWN`) or ``unknown``. It is a forecast from what is known now: generating the
earlier frames of the path adds what they show, so later frames usually end better known.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.geometry.dense_splat import splat_dense

__all__ = ["PARTLY_KNOWN", "UNKNOWN", "PathCoverage", "coverage_labels", "path_coverage"]

#: hole share from which a frame counts as partly known
PARTLY_KNOWN = 0.2
#: hole share from which a frame counts as unknown
UNKNOWN = 0.6
#: longer side of the low-resolution coverage render, in pixels
COVERAGE_SIDE = 96
#: cameras rendered at once
_BATCH = 16
#: at most this many points are rendered (an even subset: plenty at the coverage render's size)
MAX_POINTS = 150_000


@dataclass(frozen=True)
class PathCoverage:
    """Per-frame coverage of a path.

    Attributes:
        hole_share: (N,) float in [0, 1], share of each frame no stored point reaches.
        labels: N labels, ``known`` / ``partly`` / ``unknown``.
    """

    hole_share: np.ndarray
    labels: list[str]

    def frames(self, label: str) -> list[int]:
        """Indices of the frames with ``label``."""
        return [i for i, lab in enumerate(self.labels) if lab == label]


def coverage_labels(hole_share: np.ndarray) -> list[str]:
    """``known`` / ``partly`` / ``unknown`` for each hole share."""
    return ["unknown" if h >= UNKNOWN else "partly" if h >= PARTLY_KNOWN else "known" for h in np.asarray(hole_share)]


def path_coverage(points: torch.Tensor, cameras: CameraParameters, side: int = COVERAGE_SIDE) -> PathCoverage:
    """Hole share of each camera's low-resolution render of ``points``.

    Args:
        points: (P, 3) world points (e.g. ``model.ggm.point_cloud``).
        cameras: the path (N cameras, any size; rendered with the longer side ``side`` pixels).
        side: render size.
    Returns:
        :class:`PathCoverage`.
    """
    n = len(cameras)
    if n == 0:
        return PathCoverage(np.zeros(0), [])
    scale = side / max(cameras.width, cameras.height)
    w, h = max(8, round(cameras.width * scale)), max(8, round(cameras.height * scale))
    small = cameras.to(dtype=torch.float32).resized(w, h)
    shares = np.ones(n)
    if points.shape[0] > MAX_POINTS:
        points = points[:: -(-points.shape[0] // MAX_POINTS)]
    if points.shape[0] > 0:
        for start in range(0, n, _BATCH):
            idx = torch.arange(start, min(n, start + _BATCH))
            render = splat_dense(points, None, small[idx], levels=2)
            shares[start : start + len(idx)] = render.hole_mask.float().mean(dim=(1, 2, 3)).cpu().numpy()
    return PathCoverage(shares, coverage_labels(shares))
