"""Which trajectories of a round would contradict each other, forecast before anything is generated.

The trajectories of a round never see each other's frames (they start from the same memories, and may
run in parallel). Each invents what its cameras see and those memories do not hold. Where one invents
content that another sees, in the other's own unknown region or floating in front of surface the
other sees, the world gets two answers for one place: a trainer is taught both.

The forecast is the coverage guard's: every :data:`FRAME_STRIDE`-th camera of each trajectory renders the
round's starting GGM at low resolution (:data:`~worldstereo.coverage.COVERAGE_SIDE` pixels, the same
gap-free splat ``warp`` uses). A render's holes, with depth continued from each hole's background side as
``warp`` continues it, are that trajectory's new content, as world points. Trajectory ``a`` conflicts
with ``b`` when some camera of ``b`` would show ``a``'s new content on more than :data:`CONFLICT_SHARE` of
its pixels: points inside the view, in front of ``b``'s known surface (or in ``b``'s holes). The relation
is made symmetric. :func:`split_round` then orders a round into successive rounds, each trajectory after
every earlier one it conflicts with, so that a later trajectory sees what the earlier one made.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.coverage import COVERAGE_SIDE, MAX_POINTS
from worldstereo.geometry.dense_splat import splat_dense
from worldstereo.geometry.holes import extend_depth_background

__all__ = ["CONFLICT_SHARE", "FRAME_STRIDE", "RoundOverlap", "round_overlap", "split_round"]

#: a trajectory's new content on more than this share of another's view is a contradiction
CONFLICT_SHARE = 0.03
#: every this-th camera of a trajectory is rendered (and the last)
FRAME_STRIDE = 2
#: new content must lie this much (relative depth) in front of another view's surface to be seen there
DEPTH_MARGIN = 0.02


@dataclass(frozen=True)
class RoundOverlap:
    """The forecast of one round.

    Attributes:
        shares: (T, T) float, ``shares[a, b]``: the largest share of a view of trajectory ``b`` that would show
            trajectory ``a``'s new content (0 on the diagonal).
        conflicts: (T, T) bool, symmetric: ``shares`` above :data:`CONFLICT_SHARE` either way.
    """

    shares: np.ndarray
    conflicts: np.ndarray

    def pairs(self) -> list[tuple[int, int]]:
        """The conflicting pairs ``(a, b)``, ``a < b``."""
        t = self.conflicts.shape[0]
        return [(a, b) for a in range(t) for b in range(a + 1, t) if self.conflicts[a, b]]


def _sampled(cameras: CameraParameters) -> CameraParameters:
    idx = list(range(0, len(cameras), FRAME_STRIDE))
    if idx[-1] != len(cameras) - 1:
        idx.append(len(cameras) - 1)
    scale = COVERAGE_SIDE / max(cameras.width, cameras.height)
    w, h = max(8, round(cameras.width * scale)), max(8, round(cameras.height * scale))
    return cameras[torch.tensor(idx)].to(dtype=torch.float32).resized(w, h)


def _renders(points: torch.Tensor, cameras: CameraParameters) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, h, w) depth with holes continued from their background side, and (N, 1, h, w) bool holes."""
    if points.shape[0] == 0:
        hole = torch.ones(len(cameras), 1, cameras.height, cameras.width, dtype=torch.bool)
        return torch.zeros(hole.shape), hole
    render = splat_dense(points, None, cameras, levels=2)
    depth, hole = render.depth.cpu(), render.hole_mask.cpu()
    filled = torch.stack([extend_depth_background(depth[i], hole[i]) if bool(hole[i].any()) and not bool(hole[i].all())
                          else depth[i] for i in range(len(cameras))])
    return filled, hole


def round_overlap(points: torch.Tensor, trajectories: list[CameraParameters]) -> RoundOverlap:
    """Forecast which trajectories of a round contradict each other (see the module docstring).

    Args:
        points: (P, 3) the round's starting GGM points.
        trajectories: T paths (cameras of any size).
    """
    pts = points.detach().float().cpu()
    if pts.shape[0] > MAX_POINTS:
        pts = pts[:: -(-pts.shape[0] // MAX_POINTS)]
    cams = [_sampled(c) for c in trajectories]
    renders = [_renders(pts, c) for c in cams]
    new: list[torch.Tensor] = []
    for c, (depth, hole) in zip(cams, renders, strict=True):
        world = c.unproject(depth)  # (N, h, w, 3)
        keep = hole[:, 0] & (depth[:, 0] > 0)
        new.append(world[keep])
    t = len(trajectories)
    shares = np.zeros((t, t))
    for a in range(t):
        if not new[a].shape[0]:
            continue
        for b in range(t):
            if a != b:
                shares[a, b] = _largest_share(new[a], cams[b], *renders[b])
    conflicts = (shares > CONFLICT_SHARE) | (shares.T > CONFLICT_SHARE)
    np.fill_diagonal(conflicts, False)
    return RoundOverlap(shares, conflicts)


def _largest_share(points: torch.Tensor, cameras: CameraParameters, depth: torch.Tensor, hole: torch.Tensor) -> float:
    """The largest share of a view of ``cameras`` whose pixels would show ``points`` (in front of its surface or in
    its holes)."""
    uv, z = cameras.project(points.unsqueeze(0).expand(len(cameras), -1, -1))
    w, h = cameras.width, cameras.height
    u, v = uv[..., 0].floor().long(), uv[..., 1].floor().long()
    inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
    best = 0.0
    for i in range(len(cameras)):
        ui, vi, zi = u[i][inside[i]], v[i][inside[i]], z[i][inside[i]]
        if not ui.numel():
            continue
        seen = hole[i, 0, vi, ui] | (zi < (1.0 - DEPTH_MARGIN) * depth[i, 0, vi, ui])
        pixels = torch.unique(vi[seen] * w + ui[seen]).numel()
        best = max(best, pixels / (w * h))
    return best


def split_round(conflicts: np.ndarray) -> list[list[int]]:
    """Successive rounds of a round's trajectories (indices, in plan order), each trajectory one round after the
    last round holding an earlier trajectory it conflicts with; no two conflicting trajectories share a round."""
    level: list[int] = []
    for b in range(conflicts.shape[0]):
        level.append(max((level[a] + 1 for a in range(b) if conflicts[a, b]), default=0))
    return [[i for i, lv in enumerate(level) if lv == k] for k in range(max(level, default=-1) + 1)]
