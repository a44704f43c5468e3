"""An offline layout prior: plausible depth without any weights, flagged as approximate.

The prior is the classic "ground plane + backdrop" layout of a photo taken at eye level:

* below the horizon, a ground plane seen by a level camera: its inverse depth grows linearly
  with the row below the horizon (for a plane at height h, ``1/z = (v - v_h) / (f h)``);
* above it, a fronto-parallel backdrop at the far depth.

In inverse depth the two join as ``1/z(v) = 1/far + k * softplus(v - v_h)`` (softplus keeps the
seam at the horizon smooth), which is positive, finite, constant along each row and
non-increasing in depth from the top of the image to the bottom. The map is then scaled so its
median equals ``median_depth`` scene units. The image content is not used: this is a guess about
the layout, and every result says so (``approximate=True``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator, DepthResult, check_image_tensor

__all__ = ["LayoutPriorDepth", "layout_prior_depth"]

APPROXIMATE_MESSAGE = "geometry is approximate: offline layout prior (ground plane + backdrop), no depth model"


def layout_prior_depth(
    height: int,
    width: int,
    horizon: float = 0.5,
    far_near_ratio: float = 4.0,
    median_depth: float = 3.0,
    smoothness: float = 0.02,
) -> torch.Tensor:
    """Ground-plane + backdrop depth for an ``height`` x ``width`` image.

    Args:
        height, width: image size in pixels (> 0).
        horizon: horizon row as a fraction of the height from the top, in [0, 1).
        far_near_ratio: backdrop depth / depth at the bottom image edge (> 1).
        median_depth: the median of the returned map, in scene units (> 0).
        smoothness: width of the horizon seam as a fraction of the height (> 0).
    Returns:
        (1, 1, H, W) float32 depth, positive everywhere, constant along rows.
    """
    if int(height) < 1 or int(width) < 1:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    if not 0.0 <= horizon < 1.0:
        raise ValueError(f"horizon must be in [0, 1), got {horizon}")
    if not far_near_ratio > 1.0 or not math.isfinite(far_near_ratio):
        raise ValueError(f"far_near_ratio must be a finite number > 1, got {far_near_ratio}")
    if not median_depth > 0 or not math.isfinite(median_depth):
        raise ValueError(f"median_depth must be a finite positive number, got {median_depth}")
    if not smoothness > 0 or not math.isfinite(smoothness):
        raise ValueError(f"smoothness must be a finite positive number, got {smoothness}")
    height, width = int(height), int(width)
    v = (torch.arange(height, dtype=torch.float64) + 0.5) / height  # row centres, 0 = top, 1 = bottom
    below = smoothness * F.softplus((v - horizon) / smoothness)  # ~max(v - horizon, 0), smooth
    bottom = smoothness * F.softplus(torch.tensor((1.0 - horizon) / smoothness, dtype=torch.float64))
    # Units with far = 1: inverse depth rises from 1 at the horizon to far_near_ratio at the bottom.
    inv_depth = 1.0 + (far_near_ratio - 1.0) * below / bottom
    depth_rows = 1.0 / inv_depth  # (H,)
    depth = depth_rows.view(1, 1, height, 1).expand(1, 1, height, width)
    # Every row has W pixels, so the median over pixels is the median over rows (middle two averaged).
    scale = median_depth / float(torch.quantile(depth_rows, 0.5))
    return (depth * scale).float().contiguous()


@DEPTH_BACKENDS.register("prior", "offline layout prior (ground plane + backdrop); approximate, no weights")
class LayoutPriorDepth(DepthEstimator):
    """Depth from the layout prior of :func:`layout_prior_depth`; results are flagged approximate.

    Args:
        horizon, far_near_ratio, median_depth: see :func:`layout_prior_depth`.
        reason: why the prior is used (e.g. "MoGe-2 weights unavailable: ..."), appended to the message.
        fallback_reason: the short form of ``reason`` when the prior stands in for MoGe-2 (``offline``,
            ``download_failed``, ``corrupt``, ``not_found``, ``package_missing``), else None.
    """

    name = "prior"

    def __init__(
        self,
        horizon: float = 0.5,
        far_near_ratio: float = 4.0,
        median_depth: float = 3.0,
        reason: str = "",
        fallback_reason: str | None = None,
    ) -> None:
        layout_prior_depth(2, 2, horizon, far_near_ratio, median_depth)  # validate the arguments now
        self.horizon = float(horizon)
        self.far_near_ratio = float(far_near_ratio)
        self.median_depth = float(median_depth)
        self.reason = reason
        self.fallback_reason = fallback_reason

    def estimate(self, image: torch.Tensor) -> DepthResult:
        img = check_image_tensor(image)
        height, width = img.shape[-2:]
        depth = layout_prior_depth(height, width, self.horizon, self.far_near_ratio, self.median_depth)
        message = APPROXIMATE_MESSAGE + (f" ({self.reason})" if self.reason else "")
        return DepthResult(depth=depth, intrinsics=None, approximate=True, backend=self.name, message=message)
