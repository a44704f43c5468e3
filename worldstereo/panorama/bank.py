"""The official pano bank: 27 perspective views of a panorama, their cameras, and the split and merge.

Layout of a bank folder (the reference world pipeline's, read from its ``cameras.json``)::

    pano_bank/images/NNNN.png      27 views, 832 x 480, 120 x 90 degrees
    pano_bank/cameras.json         {"0000": {"intrinsic": 3x3 pixels, "extrinsic": 4x4 world-to-camera}, ...}
    pano_bank/depths/NNNN.png      optional: 16-bit camera z in millimetres, 0 = unknown

Every camera sits at the origin, world up +Z (see :mod:`worldstereo.panorama.equirect`). View 0000
looks along -X (its image right is +Y); 0001 and 0002 the same yaw pitched up and down (look-at
targets at z = +0.5 / -0.5); then 0003-0010 at pitch 0, 0011-0018 up, 0019-0026 down, each row at the
8 other yaws in 40-degree steps turning right from view 0000.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch

from worldstereo.camera import CameraParameters
from worldstereo.panorama.equirect import direction_to_pixel, pixel_to_direction

__all__ = [
    "BANK_HEIGHT",
    "BANK_VIEWS",
    "BANK_WIDTH",
    "bank_directions",
    "merge_views",
    "official_bank_cameras",
    "polar_cameras",
    "split_panorama",
    "view_name",
]

BANK_WIDTH, BANK_HEIGHT = 832, 480
#: horizontal / vertical field of view of a bank view, degrees
BANK_FOV_X, BANK_FOV_Y = 120.0, 90.0
#: yaw (degrees, turning right from view 0000) and pitch (+1 up, -1 down, 0 level) of each view, in order
BANK_VIEWS: tuple[tuple[float, int], ...] = (
    ((0.0, 0), (0.0, 1), (0.0, -1))
    + tuple((40.0 * k, 0) for k in range(1, 9))
    + tuple((40.0 * k, 1) for k in range(1, 9))
    + tuple((40.0 * k, -1) for k in range(1, 9))
)
#: look-at target height of pitched views at unit horizontal distance (forward z = 0.5 / sqrt(1.25) = 0.447)
PITCH_TARGET = 0.5
#: most samples per view pixel side when splitting a panorama finer than the views
MAX_SUPERSAMPLING = 6
_UP = np.array([0.0, 0.0, 1.0])


def view_name(index: int) -> str:
    """``0`` -> ``"0000"`` (file stem and ``cameras.json`` key of a bank view)."""
    return f"{index:04d}"


def bank_directions() -> np.ndarray:
    """(27, 3) optical axes (forward, world frame) of the official bank's views, in order."""
    out = []
    for yaw, pitch in BANK_VIEWS:
        lon = math.radians(yaw)
        f = np.array([-math.cos(lon), math.sin(lon), PITCH_TARGET * pitch])
        out.append(f / np.linalg.norm(f))
    return np.stack(out)


def _look_rotation(forward: np.ndarray) -> np.ndarray:
    """(3, 3) camera-to-world rotation of a camera looking along ``forward`` with world up +Z (OpenCV axes)."""
    z = forward / np.linalg.norm(forward)
    x = np.cross(z, _UP)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def official_bank_cameras(width: int = BANK_WIDTH, height: int = BANK_HEIGHT) -> CameraParameters:
    """The 27 cameras of the official bank (float64), at ``width x height`` with its 120 x 90 degree fields of view.

    At 832 x 480: fx 240.18, fy 240, cx 416, cy 240, every camera at the origin.
    """
    fx = 0.5 * width / math.tan(math.radians(BANK_FOV_X / 2))
    fy = 0.5 * height / math.tan(math.radians(BANK_FOV_Y / 2))
    K = torch.tensor([[fx, 0.0, width / 2], [0.0, fy, height / 2], [0.0, 0.0, 1.0]], dtype=torch.float64)
    E = torch.eye(4, dtype=torch.float64).repeat(len(BANK_VIEWS), 1, 1)
    for i, f in enumerate(bank_directions()):
        E[i, :3, :3] = torch.from_numpy(_look_rotation(f).T)
    return CameraParameters(K.expand(len(BANK_VIEWS), 3, 3).clone(), E, width, height)


def polar_cameras(width: int = BANK_WIDTH, height: int = BANK_HEIGHT) -> CameraParameters:
    """Two more views for a panorama's memories, straight up and straight down (the bank's intrinsics).

    The official bank reaches 71.6 degrees up and down; a whole panorama holds its poles too, so
    ``WorldStereo.start_panorama`` adds these two views (not written by ``panorama split``).
    """
    cams = official_bank_cameras(width, height)[:2]
    E = cams.w2c.clone()
    # camera-to-world columns x, y, z: up looks along +Z (its image top towards -X), down along -Z (top towards +X)
    up = torch.tensor([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64).T
    down = torch.tensor([[0.0, -1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, -1.0]], dtype=torch.float64).T
    E[0, :3, :3], E[1, :3, :3] = up.T, down.T
    return CameraParameters(cams.K, E, width, height)


def _view_rays(camera: CameraParameters, offset: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(H, W, 3) world directions through the pixel centres of one camera (B = 1), shifted by ``offset`` pixels."""
    cam = camera.to(dtype=torch.float64)
    K = cam.K[0].numpy()
    xs, ys = np.meshgrid(np.arange(cam.width) + 0.5 + offset[0], np.arange(cam.height) + 0.5 + offset[1])
    d = np.stack([(xs - K[0, 2]) / K[0, 0], (ys - K[1, 2]) / K[1, 1], np.ones_like(xs)], axis=-1)
    return d @ cam.c2w[0, :3, :3].numpy().T


def _padded(pano: np.ndarray, pad: int) -> np.ndarray:
    """The panorama with ``pad`` columns wrapped onto each side (longitude wraps) and rows replicated."""
    wrapped = np.concatenate([pano[:, -pad:], pano, pano[:, :pad]], axis=1)
    return np.concatenate([wrapped[:1].repeat(pad, 0), wrapped, wrapped[-1:].repeat(pad, 0)], axis=0)


def _sample(pano: np.ndarray, x: np.ndarray, y: np.ndarray, nearest: bool) -> np.ndarray:
    """Sample a panorama at continuous pixel coordinates (edges at 0), wrapping in longitude."""
    pad = 2
    src = _padded(pano, pad)
    mx = (x - 0.5 + pad).astype(np.float32)
    my = (y - 0.5 + pad).astype(np.float32)
    interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.remap(src, mx, my, interp, borderMode=cv2.BORDER_REPLICATE)


def split_panorama(pano: np.ndarray, cameras: CameraParameters, nearest: bool = False) -> np.ndarray:
    """Perspective views of an equirectangular panorama.

    Each view pixel averages ``s x s`` bilinear samples spread over its area (a box filter, as a camera
    integrates its pixel), ``s`` = the panorama's pixels per view pixel, rounded up (at most 4).

    Args:
        pano: (H, W, C) or (H, W) array (uint8 or float32), 2:1, in the convention of
            :mod:`worldstereo.panorama.equirect`.
        cameras: N cameras at the panorama's centre (their translation is ignored: a panorama
            has no parallax).
        nearest: one nearest-neighbour sample per pixel (for depth and masks) instead.
    Returns:
        (N, h, w, C) or (N, h, w) views of the same dtype, ``w x h`` = the cameras' size.
    """
    h_p, w_p = pano.shape[:2]
    view_density = float(cameras.K[:, :2, :2].diagonal(dim1=-2, dim2=-1).max())  # pixels per radian at the centre
    s = 1 if nearest else int(min(MAX_SUPERSAMPLING, max(1, math.ceil(w_p / (2 * math.pi) / view_density - 1e-6))))
    src = pano.astype(np.float32) if s > 1 and pano.dtype == np.uint8 else pano
    out = []
    for i in range(len(cameras)):
        cam = cameras[i]
        acc = None
        for oy in range(s):
            for ox in range(s):
                rays = _view_rays(cam, ((ox + 0.5) / s - 0.5, (oy + 0.5) / s - 0.5))
                x, y = direction_to_pixel(rays, w_p, h_p)
                sample = _sample(src, x, y, nearest)
                acc = sample.astype(np.float32) if acc is None else acc + sample
        view = acc / (s * s) if s > 1 else acc
        if pano.dtype == np.uint8:
            view = np.clip(view + 0.5 if s > 1 else view, 0, 255).astype(np.uint8)
        out.append(view.astype(pano.dtype, copy=False))
    return np.stack(out)


def merge_views(views: np.ndarray, cameras: CameraParameters, width: int, nearest: bool = False) -> np.ndarray:
    """An equirectangular panorama ``width x width/2`` from perspective views at its centre.

    Each panorama pixel takes the view whose optical axis is nearest its direction, among the views
    that hold it; pixels no view holds are 0.

    Args:
        views: (N, h, w, C) or (N, h, w) images of ``cameras``.
    """
    height = width // 2
    xs, ys = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    dirs = pixel_to_direction(xs, ys, width, height)  # (H, W, 3)
    out = np.zeros((height, width) + views.shape[3:], views.dtype)
    best = np.full((height, width), -np.inf)
    K = cameras.K.detach().cpu().double().numpy()
    E = cameras.w2c.detach().cpu().double().numpy()
    for i in range(len(cameras)):
        cam = dirs @ E[i, :3, :3].T  # directions in camera axes
        z = cam[..., 2]
        with np.errstate(divide="ignore", invalid="ignore"):
            u = K[i, 0, 0] * cam[..., 0] / z + K[i, 0, 2]
            v = K[i, 1, 1] * cam[..., 1] / z + K[i, 1, 2]
        inside = (z > 1e-6) & (u >= 0) & (u < cameras.width) & (v >= 0) & (v < cameras.height)
        score = np.where(inside, z / np.linalg.norm(cam, axis=-1), -np.inf)  # cosine to the optical axis
        take = score > best
        if not take.any():
            continue
        interp = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
        mu = np.where(inside, u - 0.5, -10).astype(np.float32)
        mv = np.where(inside, v - 0.5, -10).astype(np.float32)
        sampled = cv2.remap(views[i], mu, mv, interp, borderMode=cv2.BORDER_REPLICATE)
        out[take] = sampled[take]
        best = np.where(take, score, best)
    return out
