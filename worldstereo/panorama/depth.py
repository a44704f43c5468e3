"""Depth of a set of views at one scale: the offline room prior, and per-view scale alignment.

* :func:`box_prior_depths`: the offline fallback, one room-sized box around the views' centre
  (walls 2.5 either side, floor 1.5 below, ceiling 1.5 above, world up +Z). Every view sees the
  same box, so the views agree at their seams; the result is approximate and flagged so.
* :func:`align_view_scales`: depth estimated per view (MoGe-2) comes at a scale of its own. Views of
  one centre share rays: where two views see the same direction, their ranges must agree. Per pair
  of overlapping views the log ratios of the ranges on shared pixels are taken, outliers (beyond
  3 median absolute deviations) rejected, and one log scale per view fitted to all of them by least
  squares (the mean log scale is 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.camera import CameraParameters

__all__ = ["BOX_HALF_EXTENTS", "ScaleAlignment", "align_view_scales", "box_prior_depths"]

#: the prior room: half extents along x and y, and the floor / ceiling distances below / above the centre
BOX_HALF_EXTENTS = (2.5, 2.5, 1.5, 1.5)
#: shared pixels sampled per pair (a grid over the first view of the pair)
PAIR_SAMPLES = 4096
#: samples beyond this many median absolute deviations from a pair's median log ratio are rejected
OUTLIER_MADS = 3.0


def box_prior_depths(cameras: CameraParameters, centre: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 1, H, W) float32 camera z of the prior box seen by every camera (box centred on ``centre``,
    default the mean camera centre)."""
    cams = cameras.to(dtype=torch.float32)
    c = cams.camera_centers.mean(0) if centre is None else centre.float()
    hx, hy, down, up = BOX_HALF_EXTENTS
    lo = torch.tensor([-hx, -hy, -down]) - c
    hi = torch.tensor([hx, hy, up]) - c
    d_cam = cams._camera_directions()  # (N, H, W, 3), camera z = 1
    out = []
    with torch.no_grad():
        for i in range(len(cams)):
            # along rays of camera z = 1, the distance to the hit is its camera z
            w = d_cam[i] @ cams.c2w[i, :3, :3].T  # (H, W, 3) in world axes
            o = cams.camera_centers[i]
            # exit through the nearest far-side plane of the box (the camera is inside it)
            t_hi = torch.where(w > 1e-9, (hi - o) / w.clamp_min(1e-9), torch.full_like(w, math.inf))
            t_lo = torch.where(w < -1e-9, (lo - o) / w.clamp_max(-1e-9), torch.full_like(w, math.inf))
            out.append(torch.minimum(t_hi, t_lo).amin(-1).clamp_min(0.0))
    return torch.stack(out).unsqueeze(1)


@dataclass
class ScaleAlignment:
    """Per-view scales that bring estimated depths to one scale.

    Attributes:
        scales: (N,) factor of each view's depth (their geometric mean is 1).
        pairs: overlapping view pairs used.
        samples: shared pixels used, after outlier rejection.
        rejected: shared pixels rejected as outliers.
        residual: root-mean-square log-range disagreement left on the kept pixels (0.01 = 1%).
    """

    scales: np.ndarray
    pairs: int
    samples: int
    rejected: int
    residual: float


def _ranges(depth: torch.Tensor, camera: CameraParameters) -> torch.Tensor:
    """(H, W) camera z -> range along each pixel's ray."""
    d_cam = camera._camera_directions()[0]  # (H, W, 3), z = 1
    return depth * d_cam.norm(dim=-1)


def align_view_scales(depths: torch.Tensor, cameras: CameraParameters) -> ScaleAlignment:
    """Scales that make the views' depths agree where they see the same rays (views of one centre).

    Args:
        depths: (N, 1, H, W) camera z of each view at its own scale, 0 = unknown.
        cameras: the N cameras (sharing a centre; the image size of ``depths``).
    Returns:
        :class:`ScaleAlignment`; multiply view ``i``'s depth by ``scales[i]``.
    """
    n = len(cameras)
    cams = cameras.to(dtype=torch.float64)
    h, w = depths.shape[-2:]
    step = max(1, int(math.sqrt(h * w / PAIR_SAMPLES)))
    ys, xs = torch.meshgrid(torch.arange(step // 2, h, step), torch.arange(step // 2, w, step), indexing="ij")
    ranges = [_ranges(depths[i, 0].double(), cams[i]) for i in range(n)]
    axes = cams.w2c[:, 2, :3]
    rows: list[tuple[int, int, float, int]] = []  # (i, j, mean log ratio, count)
    rejected = 0
    sq = 0.0
    for i in range(n):
        dirs = cams[i].rays().directions[0][ys, xs]  # (h', w', 3)
        r_i = ranges[i][ys, xs]
        for j in range(n):
            if j <= i or float(axes[i] @ axes[j]) < math.cos(math.radians(100)):
                continue
            uv, z = cams[j].project(dirs.reshape(-1, 3) + cams[i].camera_centers[0])
            u, v, z = uv[0, :, 0], uv[0, :, 1], z[0]
            inside = (z > 1e-6) & (u >= 0) & (u < w) & (v >= 0) & (v < h)
            ui = u.clamp(0, w - 1).long()
            vi = v.clamp(0, h - 1).long()
            r_j = ranges[j][vi, ui]
            ok = inside & (r_i.reshape(-1) > 0) & (r_j > 0)
            if int(ok.sum()) < 16:
                continue
            lr = (torch.log(r_i.reshape(-1)[ok]) - torch.log(r_j[ok])).numpy()
            med = float(np.median(lr))
            mad = float(np.median(np.abs(lr - med))) * 1.4826 + 1e-6
            keep = np.abs(lr - med) <= OUTLIER_MADS * mad
            rejected += int((~keep).sum())
            kept = lr[keep]
            rows.append((i, j, float(kept.mean()), int(keep.sum())))
            sq += float(((kept - kept.mean()) ** 2).sum())
    if not rows:
        return ScaleAlignment(np.ones(n), 0, 0, rejected, 0.0)
    # s_i * r_i = s_j * r_j  ->  log s_i - log s_j = -(log r_i - log r_j), weighted by the shared pixels
    a = np.zeros((len(rows) + 1, n))
    b = np.zeros(len(rows) + 1)
    for k, (i, j, m, c) in enumerate(rows):
        wgt = math.sqrt(c)
        a[k, i], a[k, j], b[k] = wgt, -wgt, -m * wgt
    a[-1, :] = 1.0  # gauge: the mean log scale is 0
    log_s = np.linalg.lstsq(a, b, rcond=None)[0]
    samples = sum(c for *_, c in rows)
    fit = sum(c * (m + log_s[i] - log_s[j]) ** 2 for i, j, m, c in rows)
    return ScaleAlignment(np.exp(log_s), len(rows), samples, rejected, math.sqrt((sq + fit) / max(samples, 1)))
