"""Frame generators: the interface and the ``FRAME_GENERATORS`` registry (records in :mod:`worldstereo.records`).

A generator turns a target camera plus the memories of a :class:`~worldstereo.context.GenerationContext`
into one frame; it sees that context, never the model. It never updates
the memories itself: the pipeline feeds each frame back according to ``update_frequency``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from worldstereo.backends.registry import Registry
from worldstereo.camera import CameraParameters
from worldstereo.records import AttentionSummary, FrameResult

if TYPE_CHECKING:
    from worldstereo.context import GenerationContext

__all__ = ["FRAME_GENERATORS", "AttentionSummary", "FrameGenerator", "FrameResult"]


class FrameGenerator:
    """Base class of frame generators.

    ``begin_clip`` is called once per path with all its cameras (reference-view selection goes
    there), then ``generate_frame`` once per camera, in order.
    """

    name = "base"

    def begin_clip(self, ctx: GenerationContext, cameras: CameraParameters) -> None:  # noqa: B027 - optional hook
        """Prepare for a path of ``len(cameras)`` frames."""

    def generate_frame(self, ctx: GenerationContext, camera: CameraParameters, index: int) -> FrameResult:
        """Generate frame ``index`` of the current path for ``camera`` (B = 1)."""
        raise NotImplementedError


FRAME_GENERATORS: Registry[FrameGenerator] = Registry("frame generator")
