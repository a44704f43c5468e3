"""Attention queries of a browser session: a clicked pixel or 3D point -> the SSM attention maps, and ground truth.

:class:`AttentionQueries` is a mixin of :class:`ui.explorer.Session` (the session's state and its
path, generation and export handlers live there).
"""

from __future__ import annotations

import numpy as np
import torch

from ui.attention_view import bank_weights, error_map, keyframe_overlay, mark_pixel, pick_point, pixel_attention
from ui.session_records import AttentionResult, FrameRecord, uint8_image

__all__ = ["AttentionQueries"]


class AttentionQueries:
    """Attention maps of generated frames (a mixin: the host has ``records``, ``viewport``, ``frame()``...)."""

    def attention_at(self, frame_id: int | None, x: float, y: float) -> AttentionResult:
        """Attention maps of pixel ``(x, y)`` of generated frame ``frame_id``; lines drawn in the viewport."""
        self._require_model()
        return self._attention(self.frame(frame_id), x, y)

    def attention_at_point(self, origin: np.ndarray, direction: np.ndarray) -> AttentionResult:
        """Attention of the memory point a 3D click hits (ray ``origin`` (3,), ``direction`` (3,), world frame).

        The point is the nearest GGM point within ~0.7 degrees of the ray (:func:`pick_point`); the token that
        sees it is taken from the current frame if the point is in its view and not hidden there, else from
        the latest generated frame that sees it. Lines go from the point to the patches that token attended to.

        Raises:
            ValueError: nothing generated yet, the click hit no point, or no generated frame sees the point.
        """
        model = self._require_model()
        if not self.records:
            raise ValueError("generate a path first: attention exists for generated frames")
        index = pick_point(model.ggm.point_cloud.detach().cpu().numpy(), origin, direction)
        if index is None:
            raise ValueError("the click hit no point of the memory; click on the point cloud")
        point = model.ggm.point_cloud[index].detach().cpu().double().numpy()
        seen = self._frame_seeing(point)
        if seen is None:
            raise ValueError("no generated frame sees that point (it is from the input view only); "
                             "click a point a generated frame looks at")
        rec, x, y = seen
        self.current_frame_id = rec.frame_id
        return self._attention(rec, x, y, point)

    def _frame_seeing(self, point: np.ndarray) -> tuple[FrameRecord, float, float] | None:
        """(frame, x, y): the current frame, else the latest generated frame, whose view holds ``point``
        unoccluded (the token there lies no nearer than 85% of the point's depth)."""
        for rec in sorted(self.records.values(), key=lambda r: (r.frame_id != self.current_frame_id, -r.frame_id)):
            summary = rec.attention
            if summary is None:
                continue
            cam = rec.camera
            uv, z = cam.project(torch.as_tensor(point[None], dtype=cam.dtype))
            u, v, zp = float(uv[0, 0, 0]), float(uv[0, 0, 1]), float(z[0, 0])
            if zp <= 0 or not (0 <= u < cam.width and 0 <= v < cam.height):
                continue
            q = summary.query_points[summary.token_at(u, v)].to(cam.dtype)
            if bool(torch.isfinite(q).all()):
                zq = float(cam.world_to_camera(q[None])[0, 0, 2])
                if zq < 0.85 * zp:
                    continue  # something nearer covers it in this frame
            return rec, u, v
        return None

    def _on_scene_click(self, origin: np.ndarray, direction: np.ndarray) -> None:
        """Viewport click: compute the attention of the point hit and keep it for the page (``attention_since``)."""
        try:
            result = self.attention_at_point(origin, direction)
        except ValueError as exc:
            result = None
            message = str(exc)
        with self._state_lock:
            self.attention_serial += 1
            if result is None:
                self._last_attention = AttentionResult(None, None, np.zeros((1, 1, 3), np.uint8), [], np.zeros((0, 0)),
                                                       (0, 0), [], message)
            else:
                self._last_attention = result

    def attention_since(self, serial: int) -> tuple[int, AttentionResult] | None:
        """The latest 3D-click attention result when it is newer than ``serial`` (the page polls this)."""
        with self._state_lock:
            if self.attention_serial > int(serial) and self._last_attention is not None:
                return self.attention_serial, self._last_attention
            return None

    def _attention(self, rec: FrameRecord, x: float, y: float, point: np.ndarray | None = None) -> AttentionResult:
        """Attention maps of pixel ``(x, y)`` of ``rec``; viewport lines from ``point`` (else the token's own point)."""
        model = self._require_model()
        summary = rec.attention
        if summary is None:
            return AttentionResult(rec, None, rec.image, [], np.zeros((0, 0)), (0, 0), [], "this frame used no SSM attention",
                                   (x, y), point)
        att = pixel_attention(summary, x, y)
        ps = summary.patch_size
        marked = mark_pixel(rec.image, x, y, ps)
        # the heatmap's rows: the stored views this frame attended to (not every keyframe of the bank)
        stored = [k.frame_id for k in model.keyframes if k.frame_id in summary.frame_weights]
        heat = bank_weights(att, stored, summary.grid, ps)
        order = [f for f in dict.fromkeys(int(f) for f in att.frames[np.argsort(-att.weights)] if f >= 0) if f in stored]
        overlays = []
        for fid in order[:4]:
            kf = model.keyframe_by_id(fid)
            overlays.append((keyframe_overlay(kf, summary.frame_weights.get(fid), att),
                             f"{kf.label or f'keyframe {fid}'}: weight {att.weights[att.frames == fid].sum():.2f}"))
        where = (f"3D point ({point[0]:.2f}, {point[1]:.2f}, {point[2]:.2f}), seen by token {att.token} of frame {rec.frame_id}"
                 if point is not None else f"Token {att.token} of frame {rec.frame_id}")
        if att.attended:
            centres = {k.frame_id: k.camera.camera_centers[0].detach().cpu().double().numpy() for k in model.keyframes}
            views = np.array([centres.get(int(f), np.full(3, np.nan)) for f in att.frames])
            self.viewport.show_attention(att.query_point if point is None else point, att.points, att.weights, views)
            msg = f"{where} attended to {len(order)} stored view(s): " + ", ".join(model.keyframe_by_id(f).name for f in order)
        else:
            self.viewport.clear_attention()
            msg = f"{where} attended to nothing (no memory correspondence near it)."
        return AttentionResult(rec, att, marked, stored, heat, summary.grid, overlays, msg, (x, y), point)

    def truth_of(self, frame_id: int | None) -> tuple[np.ndarray, np.ndarray, float]:
        """Ground truth of a frame of a procedural scene: (truth image, error map, PSNR dB)."""
        if self.bundle is None or self.bundle.scene is None:
            raise ValueError("ground truth exists only for the procedural scenes")
        from worldstereo.scenes import get_scene

        rec = self.frame(frame_id)
        camera = rec.camera
        if self.bundle.world_from_pano is not None:  # a synthetic panorama: its frame -> the scene's world frame
            E = camera.w2c.double() @ torch.linalg.inv(self.bundle.world_from_pano.double())
            camera = type(camera)(camera.K.double(), E, camera.width, camera.height)
        gt = get_scene(self.bundle.scene).render(camera, antialias=2).image[0]
        truth = uint8_image(gt)
        err, psnr = error_map(rec.image, truth)
        return truth, err, psnr
