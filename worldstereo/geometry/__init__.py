"""Geometry: depth -> points, z-buffer point splatting, frustum overlap, hole filling."""

from worldstereo.geometry.depth import (
    DepthPoints,
    contract_depth,
    depth_to_points,
    disparity_edges,
    far_threshold,
)
from worldstereo.geometry.frustum import frustum_overlap, frustum_samples, view_angle
from worldstereo.geometry.holes import extend_depth_background, fill_thin_gaps, inpaint_colors, thin_gap_mask
from worldstereo.geometry.splat import RenderOutput, splat_points, splat_points_reference

__all__ = [
    "DepthPoints",
    "RenderOutput",
    "contract_depth",
    "depth_to_points",
    "disparity_edges",
    "extend_depth_background",
    "fill_thin_gaps",
    "inpaint_colors",
    "thin_gap_mask",
    "far_threshold",
    "frustum_overlap",
    "frustum_samples",
    "splat_points",
    "splat_points_reference",
    "view_angle",
]
