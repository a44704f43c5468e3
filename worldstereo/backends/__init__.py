"""Pluggable backends, registered by name: depth estimators and frame generators.

Importing this package registers every built-in backend.
"""

from worldstereo.backends import depth_file, depth_moge, depth_prior, oracle, vace, warp  # noqa: F401  (registration)
from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator, DepthResult, default_depth_estimator
from worldstereo.backends.generators import FRAME_GENERATORS, AttentionSummary, FrameGenerator, FrameResult

__all__ = [
    "DEPTH_BACKENDS",
    "FRAME_GENERATORS",
    "AttentionSummary",
    "DepthEstimator",
    "DepthResult",
    "FrameGenerator",
    "FrameResult",
    "default_depth_estimator",
]
