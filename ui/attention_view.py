"""Attention maps of a generated pixel: which stored views and patches it attended to.

Pure functions of an ``AttentionSummary`` and the stored keyframes; the page shows their results
(plotly heatmap, keyframe overlays) and the viewport draws the 3D lines.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from worldstereo.backends.generators import AttentionSummary
from worldstereo.keyframes import MemoryKeyframe


@dataclass(frozen=True)
class PixelAttention:
    """What the token holding pixel ``(x, y)`` of a generated frame attended to.

    Attributes:
        token: token index on the frame's grid.
        query_point: (3,) world point of the token (nan when it had no depth).
        frames: (k,) keyframe ids of the top entries (-1 where none).
        weights: (k,) their weights.
        boxes: (k, 4) pixel boxes ``x0, y0, x1, y1`` in their keyframes.
        points: (k, 3) world points of the attended entries (mean valid correspondence).
    """

    token: int
    query_point: np.ndarray
    frames: np.ndarray
    weights: np.ndarray
    boxes: np.ndarray
    points: np.ndarray

    @property
    def attended(self) -> bool:
        return bool((self.frames >= 0).any() and self.weights.sum() > 0)


def pixel_attention(summary: AttentionSummary, x: float, y: float) -> PixelAttention:
    """The attention record of the token under pixel ``(x, y)`` (pixel coordinates of the frame)."""
    t = summary.token_at(x, y)

    def np_(v: torch.Tensor) -> np.ndarray:
        return v[t].detach().cpu().numpy()

    return PixelAttention(t, np_(summary.query_points).astype(np.float64), np_(summary.top_frames),
                          np_(summary.top_weights).astype(np.float64), np_(summary.top_boxes), np_(summary.top_points))


#: how far (radians) a clicked ray may pass from a point and still pick it (~6 px at a 60 degree, 500 px view)
PICK_ANGLE = 0.012


def pick_point(points: np.ndarray, origin: np.ndarray, direction: np.ndarray, max_angle: float = PICK_ANGLE) -> int | None:
    """Index of the point a click ray hits, or None.

    Args:
        points: (N, 3) world points.
        origin, direction: (3,) the ray (direction need not be unit length).
        max_angle: points within this angle of the ray, seen from its origin, are hit.
    Returns:
        among the points hit in front of the origin, the one nearest to it (the visible surface).
    """
    d = np.asarray(direction, dtype=np.float64)
    n = float(np.linalg.norm(d))
    if len(points) == 0 or not np.isfinite(n) or n == 0:
        return None
    d = (d / n).astype(np.float32)
    v = np.asarray(points, dtype=np.float32) - np.asarray(origin, dtype=np.float32)
    t = v @ d
    perp2 = np.einsum("ij,ij->i", v, v) - t * t
    hit = (t > 0) & (perp2 <= (t * np.float32(np.tan(max_angle))) ** 2)
    idx = np.flatnonzero(hit)
    if idx.size == 0:
        return None
    return int(idx[np.argmin(t[idx])])


def bank_weights(att: PixelAttention, frame_ids: list[int], grid: tuple[int, int], patch_size: int) -> np.ndarray:
    """(len(frame_ids), rows * cols) weights of the query on every token of every listed keyframe.

    An attended entry's token index comes from its pixel box: ``(y0 / patch) * cols + x0 / patch``.
    """
    rows, cols = grid
    out = np.zeros((len(frame_ids), rows * cols))
    row_of = {f: i for i, f in enumerate(frame_ids)}
    for f, w, b in zip(att.frames, att.weights, att.boxes, strict=True):
        if f < 0 or w <= 0 or int(f) not in row_of:
            continue
        c, r = int(b[0]) // patch_size, int(b[1]) // patch_size
        if 0 <= r < rows and 0 <= c < cols:
            out[row_of[int(f)], r * cols + c] += w
    return out


#: the overlay shades the fewest patches that hold this share of a frame's attention on a keyframe
SHADED_SHARE = 0.5
#: colour and opacity of the shading (the keyframe shows through at full contrast elsewhere)
SHADE_COLOR = np.array([255, 190, 0], np.float32)
SHADE_ALPHA = 0.4


def top_patches(mass: np.ndarray, share: float = SHADED_SHARE) -> np.ndarray:
    """(rows, cols) bool: the fewest patches, heaviest first, whose attention ``mass`` (rows, cols) adds up to ``share``
    of its total. A focused attention shades a few patches; one spread evenly over the keyframe, about ``share`` of
    them; nothing when the total is 0."""
    m = np.asarray(mass, dtype=np.float64)
    out = np.zeros(m.shape, dtype=bool)
    total = float(m.sum())
    if total <= 0:
        return out
    order = np.argsort(-m, axis=None, kind="stable")
    need = int(np.searchsorted(np.cumsum(m.ravel()[order]), share * total)) + 1
    out.ravel()[order[:need]] = True
    return out & (m > 0)


def keyframe_overlay(keyframe: MemoryKeyframe, heat: torch.Tensor | None, att: PixelAttention | None) -> np.ndarray:
    """(H, W, 3) uint8 keyframe image, whole: the patches holding half of the frame's attention mass ``heat``
    (rows, cols) on it shaded (:func:`top_patches`), and the patches ``att`` attended to in this keyframe as boxes
    (line width and colour by weight). Pixels outside both are the keyframe's own."""
    img = (keyframe.image.permute(1, 2, 0).clamp(0, 1).numpy() * 255).astype(np.uint8)
    h, w = img.shape[:2]
    out = img.copy()
    if heat is not None and float(heat.sum()) > 0:
        shade = cv2.resize(top_patches(heat.float().numpy()).astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST) > 0
        out[shade] = ((1 - SHADE_ALPHA) * out[shade] + SHADE_ALPHA * SHADE_COLOR).astype(np.uint8)
    if att is not None:
        sel = att.frames == keyframe.frame_id
        if sel.any():
            wmax = max(float(att.weights.max()), 1e-9)
            for b, wt in zip(att.boxes[sel], att.weights[sel], strict=True):
                if wt <= 0:
                    continue
                strength = float(wt) / wmax
                color = (0, int(255 * strength), 255)
                cv2.rectangle(out, (int(b[0]), int(b[1])), (int(b[2]) - 1, int(b[3]) - 1), color, 1 + int(2 * strength))
    return np.ascontiguousarray(out)


def mark_pixel(image: np.ndarray, x: float, y: float, patch_size: int) -> np.ndarray:
    """A copy of ``image`` with the query token's patch outlined (cyan)."""
    out = image.copy()
    c, r = int(x // patch_size), int(y // patch_size)
    cv2.rectangle(out, (c * patch_size, r * patch_size), ((c + 1) * patch_size - 1, (r + 1) * patch_size - 1), (0, 255, 255), 2)
    return out


def error_map(generated: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """(H, W, 3) uint8 colour map of the per-pixel mean absolute error and the PSNR in dB."""
    a = generated.astype(np.float64) / 255.0
    b = truth.astype(np.float64) / 255.0
    err = np.abs(a - b).mean(axis=2)
    mse = float(((a - b) ** 2).mean())
    psnr = float("inf") if mse == 0 else -10.0 * np.log10(mse)
    vis = cv2.applyColorMap(np.clip(err * 4 * 255, 0, 255).astype(np.uint8), cv2.COLORMAP_MAGMA)[:, :, ::-1]
    return np.ascontiguousarray(vis), psnr
