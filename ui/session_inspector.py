"""The memory inspector of a browser session: move through every frame of the session and see the memories as
they were after it, where each point and keyframe came from, and the frame's layers.

:class:`Inspection` is a mixin of :class:`ui.explorer.Session` (the host has ``model``, ``bundle``, ``viewport``,
``records``, ``busy``, ``current_frame_id``, ``truth_of`` and ``_require_model``). Everything it shows is read from
the model's history (``model.history``, :mod:`worldstereo.history`); the session keeps no copy of the past.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ui.inspector import COLOUR_MODES, bank_items, colour_cloud, layer_items, timeline_label
from ui.session_records import BusyError

__all__ = ["Inspection", "InspectorView"]


@dataclass
class InspectorView:
    """What the page shows of one frame.

    Attributes:
        frame_id, label: the frame and how the timeline names it.
        legend: the colour mode's legend (HTML).
        bank: the SSM bank panel's items (thumbnail, caption); layers: the layers panel's.
        shown, total: points drawn, and in the memory then.
        seconds: from the request to the scene update sent.
    """

    frame_id: int
    label: str
    legend: str
    bank: list[tuple[np.ndarray, str]]
    layers: list[tuple[np.ndarray, str]]
    shown: int
    total: int
    seconds: float
    bank_frames: list[int] = field(default_factory=list)


class Inspection:
    """The inspector of a session (see the module docstring)."""

    _bank_frames: list[int]

    def timeline(self) -> list[int]:
        """Every frame the inspector can show, in order: the history's start, then each committed frame."""
        h = self._require_model().history
        if h.base is None:
            return []
        return [h.base.frame_id] + [f for f in h.frame_ids if f != h.base.frame_id]

    def timeline_label(self, frame_id: int) -> str:
        return timeline_label(self._require_model().history, int(frame_id))

    def inspect(self, frame_id: int, mode: str = "RGB") -> InspectorView:
        """Draw the memories right after ``frame_id`` in colour ``mode`` and return the panels of that frame.

        Raises:
            BusyError: while a path or a world is being made (the view follows the live memory then).
            KeyError: a frame the history does not hold.
        """
        t0 = time.perf_counter()
        model = self._require_model()
        if self.busy:
            raise BusyError("generating: the view follows the live memory; move through the frames when it is done")
        if mode not in COLOUR_MODES:
            raise ValueError(f"colour mode must be one of {COLOUR_MODES}, got {mode!r}")
        h = model.history
        state = h.state_at(int(frame_id))
        cloud = colour_cloud(state, mode, h)
        shown = self.viewport.show_state(cloud.points, cloud.colors)
        e = state.entry
        if e is not None:
            self.viewport.show_frames_until(state.frame_id, e.K, e.w2c, e.width, e.height)
        else:
            self.viewport.show_frames_until(state.frame_id)
        seconds = time.perf_counter() - t0
        truth = None
        if e is not None and self.bundle is not None and self.bundle.scene is not None and state.frame_id in self.records:
            truth = self.truth_of(state.frame_id)[1]
        if state.frame_id in self.records:  # the attention maps and a pixel click ask this frame now
            self.current_frame_id = state.frame_id
        bank = bank_items(state, h)
        self._bank_frames = [int(f) for f in state.book.frame_ids] + [
            f for f in h.thumbnails if f not in set(int(x) for x in state.book.frame_ids) and f <= state.frame_id]
        return InspectorView(state.frame_id, timeline_label(h, state.frame_id), cloud.legend, bank,
                             layer_items(e.layers if e is not None else None, truth), shown, len(state.points), seconds,
                             list(self._bank_frames))

    def pick_keyframe(self, index: int) -> str:
        """Mark the camera of the bank panel's ``index``-th keyframe in 3D; returns its name."""
        h = self._require_model().history
        frames = getattr(self, "_bank_frames", [])
        if not 0 <= int(index) < len(frames):
            raise ValueError("pick a keyframe of the bank panel")
        thumb = h.thumbnails[frames[int(index)]]
        self.viewport.highlight_keyframe(thumb.K, thumb.w2c, thumb.width, thumb.height)
        return thumb.label or f"frame {frames[int(index)]}"

    def live_view(self) -> None:
        """Leave the inspector: the live memories and every frame."""
        model = self._require_model()
        self.viewport.end_inspection()
        self.viewport.show_memory(model.context)
