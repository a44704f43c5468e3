"""What the viewport draws for the memory inspector: the memories as they were after a frame (in a colour mode),
the frames up to it with its own highlighted, and a keyframe picked in the bank panel.

:class:`InspectionDrawing` is a mixin of :class:`ui.viewport.Viewport` (the host has ``server``, ``_lock``,
``_frustums``, ``frames_visible``, ``max_points``, ``point_size``, ``scene_scale``).

Scene nodes: ``/ggm/points`` (replaced), ``/inspect/current`` (the chosen frame's camera, yellow),
``/inspect/keyframe`` (a keyframe picked in the bank, magenta).
"""

from __future__ import annotations

import numpy as np
import viser.transforms as vtf

from ui.lod import view_subset

__all__ = ["CURRENT_COLOUR", "PICKED_COLOUR", "InspectionDrawing"]

CURRENT_COLOUR = (255, 215, 0)
PICKED_COLOUR = (230, 40, 230)


def _pose(w2c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c2w = np.linalg.inv(np.asarray(w2c, np.float64))
    return vtf.SO3.from_matrix(c2w[:3, :3]).wxyz, c2w[:3, 3]


def _fov_y(K: np.ndarray, height: int) -> float:
    return float(2.0 * np.arctan(0.5 * height / K[1, 1]))


class InspectionDrawing:
    """The inspector's drawing (see the module docstring)."""

    inspected_frame: int | None = None
    """The frame the viewport shows the memories of (None: the live memories)."""

    def show_state(self, points: np.ndarray, colors: np.ndarray) -> int:
        """Replace the drawn cloud by ``points`` (N, 3) in ``colors`` (N, 3) uint8 (at most ``max_points`` of them, the
        live cloud's point size); returns how many are drawn."""
        cloud = view_subset(points, colors, self.max_points)
        with self._lock:
            self._replace_points(cloud)
        return self.shown_points

    def show_frames_until(self, frame_id: int, K: np.ndarray | None = None, w2c: np.ndarray | None = None,
                          width: int = 0, height: int = 0) -> None:
        """Show the frames up to ``frame_id`` (the frames switch still applies), and the chosen frame's camera
        (``K``, ``w2c``, its size) highlighted."""
        with self._lock:
            self.inspected_frame = int(frame_id)
            for name, handle in self._frustums.items():
                if name.startswith("/frames/f"):
                    handle.visible = self.frames_visible and int(name[len("/frames/f"):]) <= frame_id
            self.server.scene.remove_by_name("/inspect/current")
            if K is not None and w2c is not None:
                wxyz, pos = _pose(w2c)
                self.server.scene.add_camera_frustum(
                    "/inspect/current", fov=_fov_y(K, height), aspect=width / max(height, 1),
                    scale=0.05 * self.scene_scale, wxyz=wxyz, position=pos, color=CURRENT_COLOUR,
                    thickness=0.004 * self.scene_scale)

    def highlight_keyframe(self, K: np.ndarray, w2c: np.ndarray, width: int, height: int) -> None:
        """Mark a keyframe's camera (picked in the bank panel)."""
        wxyz, pos = _pose(w2c)
        with self._lock:
            self.server.scene.add_camera_frustum(
                "/inspect/keyframe", fov=_fov_y(K, height), aspect=width / max(height, 1),
                scale=0.06 * self.scene_scale, wxyz=wxyz, position=pos, color=PICKED_COLOUR,
                thickness=0.005 * self.scene_scale)

    def end_inspection(self) -> None:
        """Back to the live memories' frames (the caller draws the live cloud)."""
        with self._lock:
            self.inspected_frame = None
            self.server.scene.remove_by_name("/inspect")
            for name, handle in self._frustums.items():
                if name.startswith("/frames/f"):
                    handle.visible = self.frames_visible
