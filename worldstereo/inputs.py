"""Input conversion for ``WorldStereo.start``: images and depth maps of any supported form -> checked tensors.

Images become (1, 3, H, W) float32 in [0, 1]; depth (1, 1, H, W) float32 camera z, 0 = unknown.
Every check raises ``ValueError`` with one clear line.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from worldstereo.camera import check_finite

__all__ = ["resize_depth", "resize_image", "to_depth_tensor", "to_image_tensor"]


def to_image_tensor(image: Any) -> torch.Tensor:
    """Any supported image -> (1, 3, H, W) float32 in [0, 1]."""
    if isinstance(image, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(image))
    elif isinstance(image, torch.Tensor):
        t = image
    else:
        raise ValueError(f"image must be an array or tensor, got {type(image).__name__}")
    if t.ndim == 3 and t.shape[-1] in (3, 4) and t.shape[0] not in (3,):
        t = t[..., :3].permute(2, 0, 1)
    elif t.ndim == 3 and t.shape[-1] == 3 and t.shape[0] == 3 and t.dtype == torch.uint8:
        t = t.permute(2, 0, 1)
    if t.ndim == 3:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[:2] != (1, 3):
        raise ValueError(f"image must be (H, W, 3) or (1, 3, H, W), got {tuple(image.shape)}")
    if t.dtype == torch.uint8:
        t = t.float() / 255.0
    else:
        t = t.float()
        check_finite("image", t)
        if float(t.min()) < -1e-3 or float(t.max()) > 1.0 + 1e-3:
            raise ValueError("float image values must lie in [0, 1]")
        t = t.clamp(0, 1)
    if min(t.shape[-2:]) < 16:
        raise ValueError(f"image is too small ({t.shape[-1]}x{t.shape[-2]}); at least 16x16 pixels")
    return t


def to_depth_tensor(depth: Any, height: int, width: int) -> torch.Tensor:
    """Any supported depth -> (1, 1, H, W) float32, validated against the image size."""
    t = torch.as_tensor(np.asarray(depth)) if not isinstance(depth, torch.Tensor) else depth
    t = t.float()
    while t.ndim < 4:
        t = t.unsqueeze(0)
    if t.ndim != 4 or t.shape[:2] != (1, 1):
        raise ValueError(f"depth must be (H, W), (1, H, W) or (1, 1, H, W), got {tuple(depth.shape)}")
    if t.shape[-2:] != (height, width):
        raise ValueError(f"depth size {t.shape[-1]}x{t.shape[-2]} does not match the image size {width}x{height}")
    check_finite("depth", t)
    if bool((t < 0).any()):
        raise ValueError("depth must not be negative (0 = unknown)")
    return t


def resize_image(img: torch.Tensor, width: int, height: int) -> torch.Tensor:
    if img.shape[-2:] == (height, width):
        return img
    return F.interpolate(img, size=(height, width), mode="bilinear", align_corners=False, antialias=True).clamp(0, 1)


def resize_depth(depth: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Nearest resampling (no depth mixing across edges)."""
    if depth.shape[-2:] == (height, width):
        return depth
    return F.interpolate(depth, size=(height, width), mode="nearest-exact")
