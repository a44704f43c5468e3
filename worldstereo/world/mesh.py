"""A world's mesh for colliders and game engines: ``D/world/mesh.glb`` from TSDF fusion of the dataset's depths.

* **Grid**: an axis-aligned box around the dataset's cloud (its 0.5th to 99.5th percentiles per axis, padded by
  twice the truncation), voxels of side ``scene depth / VOXELS_PER_DEPTH`` (the median of the frames' known
  depths sets the scale: 1/192 of it, 2 cm for a room seen from 4 m), but never finer than a pixel at that depth
  (``scene depth / focal``: small frames give coarse voxels), and enlarged until the grid holds at most
  :data:`MAX_VOXELS`; truncation :data:`TRUNCATION_VOXELS` voxels.
* **Fusion** (in torch, on the memories' device): only the voxels within the truncation band of the dataset's
  cloud are visited (every frame's surface is in the cloud). For each frame they are projected; where the frame's
  depth is known (its 0 = unknown pixels are skipped) the signed distance along the ray's z, ``depth - z``, in
  truncations, is averaged into the voxels within one truncation of the surface (weight 1 per frame), once the
  voxel has two observations only those within :data:`CONSENSUS` of its mean so far (the input views come first:
  robust to a generated frame's stray depths). The frame's colour goes to the same voxels.
* **Surface**: marching cubes (scikit-image) at the zero level, keeping the faces whose vertices lie between seen
  voxels (an unseen voxel's default would make false walls at the edges of what was seen), vertex colours
  from the nearest voxel's colour; written by trimesh as binary glTF, in the world frame of ``pointcloud.ply``
  (metres when the depths are; OpenCV axes: y down). Not watertight: unseen surfaces stay open.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch

from worldstereo.atomic import atomic_path
from worldstereo.world.dataset import DEPTH_UNIT, DatasetFrame

__all__ = ["MAX_VOXELS", "TRUNCATION_VOXELS", "VOXELS_PER_DEPTH", "MeshInfo", "fuse_tsdf", "write_mesh"]

#: voxel side = scene depth / this
VOXELS_PER_DEPTH = 192
#: the most voxels in the grid (the voxel grows past it)
MAX_VOXELS = 12_000_000
#: truncation distance in voxels
TRUNCATION_VOXELS = 4.0
#: neighbouring depths within this share of each other are one surface (interpolated)
SMOOTH_DEPTH = 0.05
#: an observation joins a voxel seen twice or more only within this many truncations of its mean so far
CONSENSUS = 0.5


@dataclass
class MeshInfo:
    """What the fusion made: ``vertices``, ``faces``, the ``voxel`` side and ``truncation`` (scene units), the grid
    ``shape``, and the ``frames`` fused."""

    vertices: int
    faces: int
    voxel: float
    truncation: float
    shape: tuple[int, int, int]
    frames: int


def _read_frame(f: DatasetFrame) -> tuple[np.ndarray, np.ndarray]:
    from PIL import Image

    with Image.open(f.depth_path) as im:
        depth = np.asarray(im, dtype=np.float32) * DEPTH_UNIT
    with Image.open(f.image_path) as im:
        rgb = np.array(im.convert("RGB"), dtype=np.uint8)
    if depth.shape != rgb.shape[:2]:
        raise ValueError(f"{f.depth_path.name}: depth {depth.shape} and image {rgb.shape[:2]} differ in size")
    return depth, rgb


def _grid(points: np.ndarray, depths: list[np.ndarray], focal: float) -> tuple[np.ndarray, float, tuple[int, int, int]]:
    known = np.concatenate([d[d > 0].ravel()[::7] for d in depths])
    if known.size == 0 or points.shape[0] == 0:
        raise ValueError("the dataset has no known depth to fuse")
    voxel = float(np.median(known)) / min(VOXELS_PER_DEPTH, focal)
    lo = np.percentile(points, 0.5, axis=0)
    hi = np.percentile(points, 99.5, axis=0)
    while True:
        pad = TRUNCATION_VOXELS * voxel * 2
        shape = tuple(int(x) for x in np.ceil((hi - lo + 2 * pad) / voxel).astype(int) + 1)
        if int(np.prod(shape)) <= MAX_VOXELS:
            return lo - pad, voxel, shape  # type: ignore[return-value]
        voxel *= (np.prod(shape) / MAX_VOXELS) ** (1 / 3) * 1.01


def _depth_at(depth: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Depth at continuous pixel coordinates: bilinear between the 4 nearest pixel centres where all are known and
    within :data:`SMOOTH_DEPTH` of each other (a slanted surface: the nearest pixel alone is off by up to half a
    pixel's depth change), else the nearest pixel's (a depth edge, or an unknown neighbour)."""
    H, W = depth.shape
    fx, fy = x - 0.5, y - 0.5
    x0, y0 = torch.floor(fx).long(), torch.floor(fy).long()
    ax, ay = (fx - x0).clamp(0, 1), (fy - y0).clamp(0, 1)
    x0c, x1c = x0.clamp(0, W - 1), (x0 + 1).clamp(0, W - 1)
    y0c, y1c = y0.clamp(0, H - 1), (y0 + 1).clamp(0, H - 1)
    d00, d01, d10, d11 = depth[y0c, x0c], depth[y0c, x1c], depth[y1c, x0c], depth[y1c, x1c]
    lo = torch.minimum(torch.minimum(d00, d01), torch.minimum(d10, d11))
    hi = torch.maximum(torch.maximum(d00, d01), torch.maximum(d10, d11))
    bilinear = (d00 * (1 - ax) + d01 * ax) * (1 - ay) + (d10 * (1 - ax) + d11 * ax) * ay
    nearest = depth[torch.floor(y).long().clamp(0, H - 1), torch.floor(x).long().clamp(0, W - 1)]
    smooth = (lo > 0) & (hi - lo < SMOOTH_DEPTH * lo)
    return torch.where(smooth, bilinear, nearest)


def _candidates(points: np.ndarray, origin: np.ndarray, voxel: float, shape: tuple[int, int, int]) -> np.ndarray:
    """(M, 3) int64 indices of the voxels within the truncation band of the cloud: the only ones a depth can
    place within one truncation of its surface (the cloud holds every frame's surface), so free space is never
    visited."""
    from scipy.ndimage import binary_dilation

    idx = np.floor((points - origin) / voxel).astype(np.int64)
    idx = idx[((idx >= 0) & (idx < np.array(shape))).all(axis=1)]
    occupied = np.zeros(shape, bool)
    occupied[idx[:, 0], idx[:, 1], idx[:, 2]] = True
    band = binary_dilation(occupied, iterations=int(np.ceil(TRUNCATION_VOXELS)) + 1)
    return np.argwhere(band)


def fuse_tsdf(frames: list[DatasetFrame], points: np.ndarray, device: str | torch.device = "cpu"):
    """TSDF fusion of ``frames`` (those with a depth file) over the box of ``points`` (N, 3): the band of voxels
    around the cloud, frame by frame, each observation kept where it agrees with the voxel's mean so far within
    :data:`CONSENSUS` truncations (or the voxel has fewer than 2): the input views come first, so a generated
    frame's stray depths (a few percent of its pixels) neither pull the surface off nor float beside it.

    Returns (tsdf (X, Y, Z) float32 numpy in truncations, weight (X, Y, Z), colour (X, Y, Z, 3) uint8, origin (3,),
    voxel, truncation, frames fused).
    """
    frames = [f for f in frames if f.depth_path is not None and f.depth_path.is_file()]
    if not frames:
        raise ValueError("the dataset has no depth files to fuse")
    data = [_read_frame(f) for f in frames]
    focal = float(np.median([float(f.camera.K[0, 0, 0]) for f in frames]))
    pts = np.asarray(points, np.float64)
    origin, voxel, shape = _grid(pts, [d for d, _ in data], focal)
    trunc = TRUNCATION_VOXELS * voxel
    dev = torch.device(device)
    cells = torch.from_numpy(_candidates(pts, origin, voxel, shape)).to(dev)
    centres = cells.float() * voxel + torch.tensor(origin, dtype=torch.float32, device=dev)
    m = cells.shape[0]
    tsdf = torch.zeros(m, dtype=torch.float32, device=dev)
    weight = torch.zeros(m, dtype=torch.float32, device=dev)
    colour = torch.zeros(m, 3, dtype=torch.float32, device=dev)
    for f, (depth_np, rgb_np) in zip(frames, data, strict=True):
        depth = torch.from_numpy(depth_np).to(dev)
        w2c = f.camera.w2c[0].float().to(dev)
        K = f.camera.K[0].float().to(dev)
        H, W = depth.shape
        cam = centres @ w2c[:3, :3].T + w2c[:3, 3]
        zc = cam[:, 2]
        x = K[0, 0] * cam[:, 0] / zc.clamp_min(1e-6) + K[0, 2]
        y = K[1, 1] * cam[:, 1] / zc.clamp_min(1e-6) + K[1, 2]
        sel = torch.nonzero((zc > 1e-6) & (x >= 0) & (x < W) & (y >= 0) & (y < H)).squeeze(1)
        if sel.numel() == 0:
            continue
        x, y, zc = x[sel], y[sel], zc[sel]
        d = _depth_at(depth, x, y)
        t = (d - zc) / trunc
        ok = (d > 0) & (t.abs() < 1)
        w_old, t_old = weight[sel], tsdf[sel]
        ok &= ((t - t_old / w_old.clamp_min(1)).abs() < CONSENSUS) | (w_old < 2)
        sel, t = sel[ok], t[ok]
        tsdf[sel] += t
        weight[sel] += 1
        rgb = torch.from_numpy(rgb_np).to(dev)
        colour[sel] += rgb[y[ok].long().clamp(0, H - 1), x[ok].long().clamp(0, W - 1)].float()
    seen = weight > 0
    grid_t = torch.ones(shape, dtype=torch.float32, device=dev)
    grid_w = torch.zeros(shape, dtype=torch.float32, device=dev)
    grid_c = torch.zeros(shape + (3,), dtype=torch.float32, device=dev)
    c = cells[seen]
    grid_t[c[:, 0], c[:, 1], c[:, 2]] = tsdf[seen] / weight[seen]
    grid_w[c[:, 0], c[:, 1], c[:, 2]] = weight[seen]
    grid_c[c[:, 0], c[:, 1], c[:, 2]] = colour[seen] / weight[seen][:, None]
    return (grid_t.cpu().numpy(), grid_w.cpu().numpy(), grid_c.clamp(0, 255).round().byte().cpu().numpy(), origin,
            voxel, trunc, len(frames))


def write_mesh(path: str | os.PathLike, frames: list[DatasetFrame], points: np.ndarray,
               device: str | torch.device = "cpu") -> MeshInfo:
    """Fuse ``frames`` (:func:`fuse_tsdf`), run marching cubes and write ``path`` (``.glb``) atomically."""
    import trimesh
    from skimage.measure import marching_cubes

    tsdf, weight, colour, origin, voxel, trunc, n = fuse_tsdf(frames, points, device)
    seen = weight > 0
    if not seen.any() or tsdf[seen].min() > 0 or tsdf[seen].max() < 0:
        raise ValueError("the fused depths hold no surface")
    verts, faces, _, _ = marching_cubes(tsdf, level=0.0, mask=seen, allow_degenerate=False)
    # a vertex lies on a grid edge: keep it only where both ends were seen (else the default +1 of an unseen voxel
    # next to a -1 behind the surface makes a false wall, e.g. along the frustums' sides), and the faces of kept ones
    lo = np.floor(verts).astype(np.int64)
    hi = np.clip(np.ceil(verts).astype(np.int64), 0, np.array(tsdf.shape) - 1)
    good = seen[lo[:, 0], lo[:, 1], lo[:, 2]] & seen[hi[:, 0], hi[:, 1], hi[:, 2]]
    faces = faces[good[faces].all(axis=1)]
    used = np.unique(faces)
    remap = np.full(len(verts), -1, np.int64)
    remap[used] = np.arange(len(used))
    verts, faces = verts[used], remap[faces]
    if len(faces) == 0:
        raise ValueError("the fused depths hold no surface")
    idx = np.clip(np.round(verts).astype(np.int64), 0, np.array(tsdf.shape) - 1)
    rgb = colour[idx[:, 0], idx[:, 1], idx[:, 2]]
    rgba = np.concatenate([rgb, np.full((len(rgb), 1), 255, np.uint8)], axis=1)
    mesh = trimesh.Trimesh(verts * voxel + origin, faces, vertex_colors=rgba, process=False)
    with atomic_path(path) as tmp:
        tmp.write_bytes(trimesh.Scene(mesh).export(file_type="glb"))
    return MeshInfo(len(verts), len(faces), voxel, trunc, tuple(tsdf.shape), n)  # type: ignore[arg-type]
