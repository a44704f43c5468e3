"""A slow, exact splat renderer in torch: the reference for tests and CPU figures, not for interaction.

It follows gsplat's conventions (its pure-torch ``_torch_impl`` beside the CUDA kernels is the model):

* EWA projection: camera-space covariance ``W Sigma W^T``, the perspective Jacobian at the mean (its x / y
  clamped to 1.3 times the field of view, as gsplat does), plus :data:`EPS2D` pixels squared on the diagonal (a
  low-pass filter); the screen radius is ``ceil(3.33 sigma)`` per axis; Gaussians nearer than :data:`NEAR_PLANE`
  are culled;
* pixel ``(j, i)`` is sampled at its centre ``(j + 0.5, i + 0.5)`` (this project's convention too);
* per pixel, front to back in depth order: ``alpha = min(opacity * exp(-0.5 d^T conic d), 0.999)``, skipped below
  ``1/255``; compositing stops before the Gaussian that would take the transmittance to ``1e-4`` or below.

Tiles of 16 x 16 pixels each composite only the Gaussians whose screen box touches them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldstereo.camera import CameraParameters
from worldstereo.splats.gaussians import Gaussians

__all__ = ["EPS2D", "NEAR_PLANE", "SplatRender", "project_gaussians", "render_splats"]

EPS2D = 0.3
NEAR_PLANE = 0.01
TILE = 16
_ALPHA_MIN = 1.0 / 255.0
_ALPHA_MAX = 0.999
_T_MIN = 1e-4


@dataclass
class Projected:
    """Gaussians on screen: ``means2d`` (N, 2) pixels, ``conics`` (N, 3) as (a, b, c) of the inverse 2-D
    covariance ``[[a, b], [b, c]]``, ``depths`` (N,) camera z, ``radii`` (N, 2) int pixels (0 = culled)."""

    means2d: torch.Tensor
    conics: torch.Tensor
    depths: torch.Tensor
    radii: torch.Tensor


@dataclass
class SplatRender:
    """A rendered view: ``rgb`` (H, W, 3), ``alpha`` (H, W) accumulated opacity, ``depth`` (H, W) expected camera z
    (0 where alpha is 0)."""

    rgb: torch.Tensor
    alpha: torch.Tensor
    depth: torch.Tensor


def project_gaussians(g: Gaussians, camera: CameraParameters) -> Projected:
    """EWA projection of ``g`` into ``camera`` (B = 1); float64 throughout."""
    w2c = camera.w2c[0].double()
    K = camera.K[0].double()
    W, H = camera.width, camera.height
    R, t = w2c[:3, :3], w2c[:3, 3]
    means_c = g.means.double() @ R.T + t
    cov_c = R @ g.covariances().double() @ R.T
    tx, ty, tz = means_c.unbind(-1)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    tan_x, tan_y = 0.5 * W / fx, 0.5 * H / fy
    safe_z = torch.where(tz.abs() < 1e-12, torch.full_like(tz, 1e-12), tz)
    lim_xp, lim_xn = (W - cx) / fx + 0.3 * tan_x, cx / fx + 0.3 * tan_x
    lim_yp, lim_yn = (H - cy) / fy + 0.3 * tan_y, cy / fy + 0.3 * tan_y
    jx = safe_z * torch.clamp(tx / safe_z, -lim_xn, lim_xp)
    jy = safe_z * torch.clamp(ty / safe_z, -lim_yn, lim_yp)
    zero = torch.zeros_like(tz)
    J = torch.stack([fx / safe_z, zero, -fx * jx / safe_z**2, zero, fy / safe_z, -fy * jy / safe_z**2],
                    dim=-1).reshape(-1, 2, 3)
    cov2d = J @ cov_c @ J.transpose(1, 2) + EPS2D * torch.eye(2, dtype=torch.float64)
    det = (cov2d[:, 0, 0] * cov2d[:, 1, 1] - cov2d[:, 0, 1] * cov2d[:, 1, 0]).clamp_min(1e-10)
    conics = torch.stack([cov2d[:, 1, 1] / det, -0.5 * (cov2d[:, 0, 1] + cov2d[:, 1, 0]) / det,
                          cov2d[:, 0, 0] / det], dim=-1)
    means2d = torch.stack([fx * tx / safe_z + cx, fy * ty / safe_z + cy], dim=-1)
    radii = torch.stack([torch.ceil(3.33 * cov2d[:, 0, 0].sqrt()), torch.ceil(3.33 * cov2d[:, 1, 1].sqrt())], dim=-1)
    inside = ((means2d[:, 0] + radii[:, 0] > 0) & (means2d[:, 0] - radii[:, 0] < W)
              & (means2d[:, 1] + radii[:, 1] > 0) & (means2d[:, 1] - radii[:, 1] < H))
    keep = (tz > NEAR_PLANE) & inside & torch.isfinite(means2d).all(dim=1)
    radii = torch.where(keep[:, None], radii, torch.zeros_like(radii)).long()
    return Projected(means2d, conics, tz, radii)


def _tile_pairs(p: Projected, W: int, H: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(tile id, Gaussian id) pairs sorted by tile, then by depth; and the number of tile columns."""
    tw, th = (W + TILE - 1) // TILE, (H + TILE - 1) // TILE
    live = torch.nonzero(p.radii[:, 0] > 0).squeeze(1)
    live = live[torch.argsort(p.depths[live], stable=True)]
    m, r = p.means2d[live], p.radii[live].double()
    x0 = torch.floor((m[:, 0] - r[:, 0]) / TILE).clamp(0, tw - 1).long()
    x1 = torch.floor((m[:, 0] + r[:, 0]) / TILE).clamp(0, tw - 1).long()
    y0 = torch.floor((m[:, 1] - r[:, 1]) / TILE).clamp(0, th - 1).long()
    y1 = torch.floor((m[:, 1] + r[:, 1]) / TILE).clamp(0, th - 1).long()
    nx, ny = x1 - x0 + 1, y1 - y0 + 1
    count = nx * ny
    owner = torch.repeat_interleave(torch.arange(live.shape[0]), count)
    start = torch.cumsum(count, 0) - count
    k = torch.arange(owner.shape[0]) - start[owner]
    tiles = (y0[owner] + k // nx[owner]) * tw + x0[owner] + k % nx[owner]
    order = torch.argsort(tiles * max(live.shape[0], 1) + owner, stable=True)  # by tile, then depth rank
    return tiles[order], live[owner[order]], tw


def render_splats(g: Gaussians, camera: CameraParameters, background: tuple[float, float, float] | None = None,
                  max_pairs: int = 4_000_000) -> SplatRender:
    """Render ``g`` from ``camera`` (B = 1) by per-pixel front-to-back alpha compositing (module docstring).

    Args:
        background: RGB composited behind (None: black, i.e. the premultiplied colour).
        max_pairs: the most (Gaussian, pixel) pairs evaluated at once within a tile (bounds memory).
    """
    if len(camera) != 1:
        raise ValueError(f"render_splats renders one camera, got {len(camera)}")
    W, H = camera.width, camera.height
    rgb = torch.zeros(H * W, 3, dtype=torch.float64)
    acc = torch.zeros(H * W, dtype=torch.float64)
    dep = torch.zeros(H * W, dtype=torch.float64)
    if len(g):
        p = project_gaussians(g, camera)
        tiles, gids, tw = _tile_pairs(p, W, H)
        colors, opac = g.colors.double(), g.opacities.double()
        bounds = torch.searchsorted(tiles, torch.arange(tw * ((H + TILE - 1) // TILE) + 1))
        for tile in torch.nonzero(bounds[1:] > bounds[:-1]).squeeze(1).tolist():
            ids = gids[bounds[tile]: bounds[tile + 1]]
            ty, tx = divmod(tile, tw)
            ys = torch.arange(ty * TILE, min((ty + 1) * TILE, H))
            xs = torch.arange(tx * TILE, min((tx + 1) * TILE, W))
            yy, xx = torch.meshgrid(ys, xs, indexing="ij")
            pix = (yy * W + xx).reshape(-1)
            centres = torch.stack([xx.reshape(-1) + 0.5, yy.reshape(-1) + 0.5], dim=-1).double()
            T = torch.ones(pix.shape[0], dtype=torch.float64)
            step = max(1, max_pairs // pix.shape[0])
            for s in range(0, ids.shape[0], step):
                chunk = ids[s: s + step]
                d = centres[None, :, :] - p.means2d[chunk][:, None, :]  # (G, P, 2)
                a, b, c = p.conics[chunk].unbind(-1)
                sigma = 0.5 * (a[:, None] * d[..., 0] ** 2 + c[:, None] * d[..., 1] ** 2) + b[:, None] * d[..., 0] * d[..., 1]
                alpha = torch.clamp_max(opac[chunk][:, None] * torch.exp(-sigma), _ALPHA_MAX)
                alpha = torch.where((sigma >= 0) & (alpha >= _ALPHA_MIN), alpha, torch.zeros_like(alpha))
                after = T[None, :] * torch.cumprod(1.0 - alpha, dim=0)
                before = torch.cat([T[None, :], after[:-1]], dim=0)
                w = torch.where(after > _T_MIN, alpha * before, torch.zeros_like(alpha))
                rgb[pix] += w.T @ colors[chunk]
                acc[pix] += w.sum(dim=0)
                dep[pix] += w.T @ p.depths[chunk]
                T = torch.where(after[-1] > _T_MIN, after[-1], torch.zeros_like(T))  # 0: this pixel is done
                if not bool((T > 0).any()):
                    break
    out = rgb.reshape(H, W, 3)
    alpha = acc.reshape(H, W)
    if background is not None:
        out = out + (1.0 - alpha)[..., None] * torch.tensor(background, dtype=torch.float64)
    depth = torch.where(alpha > 0, dep.reshape(H, W) / alpha.clamp_min(1e-12), torch.zeros_like(alpha))
    return SplatRender(out.float(), alpha.float(), depth.float())
