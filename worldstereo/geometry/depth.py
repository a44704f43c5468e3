"""Depth maps -> world point clouds, with the two clean-ups of the reference method.

* **Floater filter** (``filter_floaters``): pixels on a depth discontinuity unproject to "flying
  pixels" strung between foreground and background. As in WorldStereo / Voyager (MoGe's
  ``depth_edge``), a pixel is dropped when the range of *disparity* ``1 / depth`` over its
  ``kernel_size x kernel_size`` window, relative to its own disparity, exceeds ``edge_threshold``:
  ``(max(disp) - min(disp)) / disp > edge_threshold``. Unknown pixels (depth <= 0) are ignored in
  the window, so the border of a hole is not an edge.
* **Far-range contraction** (``contract_far``): depths beyond ``far`` are pulled in with the
  Mip-NeRF 360 contraction applied to depth, ``d' = far * (2 - far / d)`` for ``d > far`` (and
  ``d' = d`` below). It is continuous with slope 1 at ``far``, strictly increasing, and bounded by
  ``2 * far``: the background stays behind everything nearer but at a finite distance. ``far`` is
  given, or the ``far_percentile``-th percentile of each image's valid depth.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from worldstereo.camera import CameraParameters, check_finite

__all__ = ["DepthPoints", "contract_depth", "depth_to_points", "disparity_edges", "far_threshold"]


@dataclass(frozen=True)
class DepthPoints:
    """Points lifted from a batch of depth maps.

    Attributes:
        points: (N, 3) float32 world points, one per kept pixel, in (b, row, column) order.
        colors: (N, 3) float32 colours of those pixels, or None if no image was given.
        pixels: (N, 3) int64 ``[b, row, column]`` of each point's pixel.
        mask: (B, 1, H, W) bool, True where a pixel was kept (note: not the hole convention).
        depth: (B, 1, H, W) float32 depth the points were lifted from (after contraction; 0 where
            unknown).
    """

    points: torch.Tensor
    colors: torch.Tensor | None
    pixels: torch.Tensor
    mask: torch.Tensor
    depth: torch.Tensor


def _check_depth(depth: torch.Tensor) -> torch.Tensor:
    if not isinstance(depth, torch.Tensor):
        raise ValueError(f"depth must be a torch.Tensor of shape (B, 1, H, W), got {type(depth).__name__}")
    if depth.ndim != 4 or depth.shape[1] != 1:
        raise ValueError(f"depth must have shape (B, 1, H, W), got {tuple(depth.shape)}")
    if not depth.is_floating_point():
        raise ValueError(f"depth must be a floating tensor, got {depth.dtype}")
    check_finite("depth", depth)
    return depth.to(torch.float32)


def _check_positive(name: str, value: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def _check_edge_args(edge_threshold: float, kernel_size: int, kernel_name: str) -> tuple[float, int]:
    edge_threshold = _check_positive("edge_threshold", edge_threshold)
    if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"{kernel_name} must be an odd positive integer, got {kernel_size!r}")
    return edge_threshold, kernel_size


def _check_percentile(percentile: float) -> float:
    if isinstance(percentile, bool) or not isinstance(percentile, (int, float)) or not 0 < percentile <= 100:
        raise ValueError(f"far_percentile must lie in (0, 100], got {percentile!r}")
    return float(percentile)


def disparity_edges(depth: torch.Tensor, edge_threshold: float = 0.03, kernel_size: int = 3) -> torch.Tensor:
    """Pixels at depth discontinuities, judged on disparity.

    Args:
        depth: (B, 1, H, W) z-depth, <= 0 where unknown.
        edge_threshold: relative disparity range above which a pixel is an edge (> 0).
        kernel_size: odd window size.
    Returns:
        (B, 1, H, W) bool, True at valid pixels with
        ``(max - min of valid disparity in the window) / own disparity > edge_threshold``.
    """
    depth = _check_depth(depth)
    edge_threshold, kernel_size = _check_edge_args(edge_threshold, kernel_size, "kernel_size")
    valid = depth > 0
    disp = torch.where(valid, 1.0 / depth.clamp_min(1e-30), 0.0)
    pad = kernel_size // 2
    hi = F.max_pool2d(torch.where(valid, disp, -math.inf), kernel_size, stride=1, padding=pad)
    lo = -F.max_pool2d(torch.where(valid, -disp, -math.inf), kernel_size, stride=1, padding=pad)
    return valid & ((hi - lo) > edge_threshold * disp)


def contract_depth(depth: torch.Tensor, far: torch.Tensor | float) -> torch.Tensor:
    """Contract depths beyond ``far`` into ``(far, 2 far)``: ``d' = far * (2 - far / d)``.

    Args:
        depth: (...) depths; values <= far (including unknown 0) are returned unchanged.
        far: scalar or a tensor broadcastable to ``depth`` (e.g. (B, 1, 1, 1)), > 0.
    Returns:
        (...) contracted depth: continuous, slope 1 at ``far``, strictly increasing, < 2 far.
    """
    far_t = torch.as_tensor(far, dtype=depth.dtype, device=depth.device)
    if not bool(torch.isfinite(far_t).all()) or bool((far_t <= 0).any()):
        raise ValueError(f"far must be finite and > 0, got {far!r}")
    contracted = far_t * (2.0 - far_t / torch.maximum(depth, far_t))
    return torch.where(depth > far_t, contracted, depth)


def far_threshold(depth: torch.Tensor, percentile: float) -> torch.Tensor:
    """(B, 1, 1, 1) per-image ``percentile``-th percentile of the valid (> 0) depth.

    Images without valid depth get +inf (nothing to contract).
    """
    depth = _check_depth(depth)
    percentile = _check_percentile(percentile)
    out = torch.full((depth.shape[0], 1, 1, 1), math.inf, dtype=depth.dtype, device=depth.device)
    for b in range(depth.shape[0]):
        valid = depth[b][depth[b] > 0]
        if valid.numel():
            # kthvalue instead of torch.quantile: no input-size limit, exact order statistic.
            k = max(1, math.ceil(percentile / 100.0 * valid.numel()))
            out[b] = valid.kthvalue(k).values
    return out


def depth_to_points(
    depth: torch.Tensor,
    cameras: CameraParameters,
    image: torch.Tensor | None = None,
    filter_floaters: bool = False,
    edge_threshold: float = 0.03,
    edge_kernel_size: int = 3,
    contract_far: bool = False,
    far_percentile: float = 95.0,
    far: float | None = None,
) -> DepthPoints:
    """Lift every pixel with known depth to a world point at its pixel centre.

    Args:
        depth: (B, 1, H, W) camera z, <= 0 where unknown (those pixels are skipped).
        cameras: B cameras (or 1, shared) of size W x H.
        image: optional (B, 3, H, W) colours, returned per point.
        filter_floaters: drop :func:`disparity_edges` pixels (``edge_threshold``, ``edge_kernel_size``).
        contract_far: contract depths beyond the far threshold with :func:`contract_depth`.
        far_percentile: the far threshold as a percentile of each image's valid depth (used when
            ``contract_far`` and ``far`` is None).
        far: explicit far threshold in scene units (> 0), overriding ``far_percentile``.
    Returns:
        :class:`DepthPoints`.
    """
    depth = _check_depth(depth)
    if not isinstance(cameras, CameraParameters):
        raise ValueError(f"cameras must be a CameraParameters, got {type(cameras).__name__}")
    B, _, H, W = depth.shape
    if (H, W) != (cameras.height, cameras.width):
        raise ValueError(f"depth size {(H, W)} does not match the cameras' (height, width) {(cameras.height, cameras.width)}")
    if len(cameras) not in (1, B):
        raise ValueError(f"depth batch {B} does not match {len(cameras)} cameras")
    if image is not None:
        if not isinstance(image, torch.Tensor) or image.ndim != 4 or tuple(image.shape) != (B, 3, H, W):
            shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
            raise ValueError(f"image must have shape {(B, 3, H, W)} (matching depth), got {shape}")
        if not image.is_floating_point():
            raise ValueError(f"image must be a floating tensor in [0, 1], got {image.dtype}")
        check_finite("image", image)
    if far is not None:
        far = _check_positive("far", far)
    _check_edge_args(edge_threshold, edge_kernel_size, "edge_kernel_size")
    _check_percentile(far_percentile)
    cameras = cameras.to(depth.device)

    keep = depth > 0
    depth = torch.where(keep, depth, 0.0)  # negative = unknown too
    if filter_floaters:
        keep &= ~disparity_edges(depth, edge_threshold, edge_kernel_size)
    if contract_far:
        threshold = far_threshold(depth, far_percentile) if far is None else far
        depth = contract_depth(depth, threshold)
    world = cameras.unproject(depth).to(torch.float32)  # (B, H, W, 3)
    sel = keep[:, 0]
    pixels = sel.nonzero()  # (N, 3) [b, row, col], row-major
    points = world[sel]
    colors = image.permute(0, 2, 3, 1)[sel].to(torch.float32) if image is not None else None
    return DepthPoints(points=points, colors=colors, pixels=pixels, mask=keep, depth=depth)
