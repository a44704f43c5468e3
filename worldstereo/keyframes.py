"""Stored keyframes (the views behind the Spatial-Stereo Memory) and reference-view selection."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from worldstereo.camera import CameraParameters
from worldstereo.geometry.frustum import frustum_overlap, view_angle


@dataclass
class MemoryKeyframe:
    """One stored view.

    Attributes:
        frame_id: global frame counter of the exploration (0 = the input image).
        path_index: which generated path it came from (-1 = the input image).
        image: (3, H, W) float32 in [0, 1].
        depth: (1, H, W) float32 camera z, 0 = unknown.
        confidence: (1, H, W) float32 in [0, 1]: 1 for observed/rendered pixels, lower where inpainted.
        camera: the view's camera (B = 1).
        label: what the view is, for attention maps ("" for the input image and generated frames;
            "bank view 0003" for a view a panorama or posed-view start stored).
    """

    frame_id: int
    path_index: int
    image: torch.Tensor
    depth: torch.Tensor
    confidence: torch.Tensor
    camera: CameraParameters
    label: str = ""

    @property
    def name(self) -> str:
        """How attention maps name the view: its label, else ``frame N``."""
        return self.label or f"frame {self.frame_id}"


def keyframe_positions(num_frames: int, num_keyframes: int = 8) -> list[int]:
    """Evenly spaced keyframe indices in a clip, first and last included (8 of 21 in the reference)."""
    if num_frames <= 0:
        return []
    k = min(num_keyframes, num_frames)
    if k == 1:
        return [0]
    return sorted({round(i * (num_frames - 1) / (k - 1)) for i in range(k)})


_TARGET_CHUNK = 64


def select_reference_views(
    views: CameraParameters,
    targets: CameraParameters,
    max_views: int = 8,
    scene_depth: float = 1.0,
    angle_scale: float = 0.75,
    min_score: float = 0.02,
) -> list[int]:
    """Choose at most ``max_views`` stored views for a clip, as the reference method does.

    Each stored view is scored by the best, over the clip's target cameras, of its frustum overlap
    with the target times an angle penalty ``exp(-(angle / angle_scale)^2)``; views below
    ``min_score`` are dropped; the rest are thinned by farthest-point sampling on pose features
    (camera centre / ``scene_depth`` and optical axis), starting from the best-scored view.

    Args:
        views: (V) stored cameras; targets: (T) the clip's cameras.
    Returns:
        indices into ``views``, best first.
    """
    if len(views) == 0 or max_views <= 0:
        return []
    views_t = views.to(dtype=torch.float32)
    targets_t = targets.to(dtype=torch.float32)
    score = torch.zeros(len(views_t))
    for start in range(0, len(targets_t), _TARGET_CHUNK):  # memory independent of the path's length
        chunk = targets_t[start : start + _TARGET_CHUNK]
        overlap = frustum_overlap(views_t, chunk, far=4.0 * scene_depth)  # (V, t)
        angle = view_angle(views_t, chunk)  # (V, t)
        score = torch.maximum(score, (overlap * torch.exp(-((angle / angle_scale) ** 2))).amax(dim=1))
    candidates = [int(i) for i in torch.argsort(score, descending=True) if float(score[i]) >= min_score]
    if len(candidates) <= max_views:
        return candidates
    centres = views_t.camera_centers / max(scene_depth, 1e-6)
    axes = views_t.c2w[:, :3, 2]
    feats = torch.cat([centres, axes], dim=1)[candidates]
    chosen = [0]
    dist = (feats - feats[0]).norm(dim=1)
    while len(chosen) < max_views:
        nxt = int(torch.argmax(dist))
        chosen.append(nxt)
        dist = torch.minimum(dist, (feats - feats[nxt]).norm(dim=1))
    return [candidates[i] for i in chosen]
