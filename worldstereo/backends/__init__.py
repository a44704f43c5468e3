"""Pluggable backends, registered by name: depth estimators, fills and frame generators.

Importing this package registers every built-in backend. Backends see a
:class:`~worldstereo.context.GenerationContext`, never the model; :mod:`.factory` picks them by name.
"""

from worldstereo.backends import depth_file, depth_moge, depth_prior, oracle, vace, warp  # noqa: F401  (registration)
from worldstereo.backends.depth import DEPTH_BACKENDS, DepthEstimator, DepthResult
from worldstereo.backends.factory import default_depth_estimator, make_depth_estimator, make_generator
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
    "make_depth_estimator",
    "make_generator",
]
