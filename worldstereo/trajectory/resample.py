"""Resampling of camera lists: even subsampling of a path, and moving a path onto another start pose."""

from __future__ import annotations

import numpy as np
import torch

from worldstereo.camera import CameraParameters

__all__ = ["reanchor", "subsample"]


def subsample(cameras: CameraParameters, num_frames: int | None) -> CameraParameters:
    """``num_frames`` cameras evenly spaced over ``cameras`` (first and last kept); all if None or more."""
    n = len(cameras)
    if num_frames is None or num_frames >= n:
        return cameras
    idx = np.unique(np.round(np.linspace(0, n - 1, num_frames)).astype(np.int64))
    return cameras[torch.from_numpy(idx)]


def reanchor(cameras: CameraParameters, start: CameraParameters) -> CameraParameters:
    """Move a path rigidly so that its first pose becomes ``start``'s: ``E_i' = E_i E_0^-1 E_start``."""
    E = cameras.extrinsics.double()
    M = torch.linalg.inv(E[0]) @ start.extrinsics[0].double().to(E.device)
    E2 = E @ M
    E2[:, 3] = torch.tensor([0.0, 0.0, 0.0, 1.0], dtype=E2.dtype)
    return CameraParameters(cameras.intrinsics.double(), E2, cameras.width, cameras.height)
