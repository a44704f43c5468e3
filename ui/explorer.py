"""One browser session of the explorer: input, model, viewport, path editor and the generation stream.

Plain Python (no gradio): the page's handlers are thin wrappers around these methods, and tests drive them
directly. Everything a session owns (model, viser server, temp dir) is freed by :meth:`Session.close`.
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ui import path_editor as pe
from ui.config import KEYFRAMES_PER_MEMORY, WORKING_SIZES, AppConfig
from ui.engine_status import EngineStatus
from ui.exports import ExportFiles, export_all
from ui.plots import StatsPoint, stats_points
from ui.samples import InputBundle, display_name
from ui.session_attention import AttentionQueries
from ui.session_inspector import Inspection
from ui.session_records import (
    AttentionResult,
    BusyError,
    FrameRecord,
    StartSummary,
    StreamUpdate,
    depth_status,
    release_memory,
    uint8_image,
)
from ui.session_world import WorldBuilding
from ui.viewport import EditorCallbacks, Viewport
from worldstereo.atomic import atomic_path
from worldstereo.camera import CameraParameters
from worldstereo.config import FILL_CHOICES, GENERATOR_CHOICES
from worldstereo.model import WorldStereo, WorldStereoConfig, make_depth_estimator
from worldstereo.threads import shared_policy

__all__ = [
    "DEPTH_CHOICES",
    "GENERATOR_CHOICES",
    "AttentionResult",
    "BusyError",
    "FrameRecord",
    "Session",
    "StartSummary",
    "StreamUpdate",
    "default_generator",
    "release_memory",
]

DEPTH_CHOICES = ("auto", "prior", "moge")


def default_generator() -> str:
    """What the page selects first: ``vace`` where a CUDA GPU is present (ZeroGPU, a workstation), else ``warp``."""
    return "vace" if torch.cuda.is_available() else "warp"


#: the files of the Downloads, in the order the page lists them (``ui.exports``, ``ui.session_world``)
#: how the viewport draws the memories
DISPLAY_MODES = ("Points", "Splats")
DOWNLOAD_NAMES = ("video.mp4", "pointcloud.ply", "pointcloud.glb", "splats.ply", "cameras.json", "camera_path.json",
                  "memory_snapshot.zip", "world_dataset.zip")


@dataclass
class Session(AttentionQueries, WorldBuilding, Inspection):
    """State of one browser session (keyed by gradio's session hash in :class:`ui.sessions.SessionManager`)."""

    session_id: str
    directory: Path
    config: AppConfig
    token: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    model: WorldStereo | None = None
    bundle: InputBundle | None = None
    editor: pe.PathEditorState = field(default_factory=pe.PathEditorState)
    num_frames: int = 21
    frames: list[FrameRecord] = field(default_factory=list)
    records: dict[int, FrameRecord] = field(default_factory=dict)
    last_seen: float = field(default_factory=time.monotonic)
    engine: EngineStatus | None = None
    current_frame_id: int | None = None
    """The frame the page shows (the last generated one, or the one picked in its gallery)."""
    inspector_follow: bool = True
    """The timeline follows the newest frame (until the user moves it)."""
    inspector_playing: bool = False
    attention_serial: int = 0
    """Counts 3D attention clicks; ``attention_since`` hands the page each new result once."""
    _last_attention: AttentionResult | None = None
    _viewport: Viewport | None = None
    _busy: threading.Lock = field(default_factory=threading.Lock)
    _cancel: threading.Event = field(default_factory=threading.Event)
    _stopped: threading.Event = field(default_factory=threading.Event)
    _final_status: str = ""
    _state_lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def history(self) -> list[StatsPoint]:
        """The memory charts' points, read from the model's history (the session keeps no copy of the past)."""
        if self.model is None:
            return []
        return stats_points(self.model.history, self.model.config.memory_size)

    # ------------------------------------------------------------------ lifecycle
    def touch(self) -> None:
        self.last_seen = time.monotonic()

    @property
    def viewport(self) -> Viewport:
        """The session's viewport (its viser server starts on first use)."""
        with self._state_lock:
            if self._viewport is None:
                self._viewport = Viewport(self.config.max_view_points, self.config.max_view_splats)
                self._viewport.build_editor_panel(self._editor_callbacks())
                self._viewport.on_scene_click(self._on_scene_click)
            return self._viewport

    @property
    def viewer_port(self) -> int | None:
        return self._viewport.port if self._viewport is not None else None

    @property
    def busy(self) -> bool:
        return self._busy.locked()

    def close(self) -> None:
        """Stop generation, free the viser server and delete the temp dir."""
        self._cancel.set()
        with self._state_lock:
            if self._viewport is not None:
                self._viewport.close()
                self._viewport = None
            self.model = None
        shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ input
    def load(
        self, bundle: InputBundle, size: str, depth_backend: str = "auto", generator: str = "auto", progress=None,
        fill: str = "auto",
    ) -> StartSummary:
        """Start a new exploration from ``bundle`` at working ``size`` (a key of ``WORKING_SIZES``).

        Estimated depth is scaled to the bundle's first official path (``worldstereo.scale``);
        ``progress(bytes_done, bytes_total)`` is called while depth weights download (first use only).
        """
        if size not in WORKING_SIZES:
            raise ValueError(f"size must be one of {sorted(WORKING_SIZES)}, got {size!r}")
        if depth_backend not in DEPTH_CHOICES:
            raise ValueError(f"depth backend must be one of {DEPTH_CHOICES}, got {depth_backend!r}")
        if generator not in GENERATOR_CHOICES:
            raise ValueError(f"generator must be one of {GENERATOR_CHOICES}, got {generator!r}")
        if generator == "oracle" and (bundle.scene is None or bundle.kind == "panorama"):
            raise ValueError("the oracle generator needs a procedural scene's start view (it renders the ground truth)")
        w, h = WORKING_SIZES[size]
        tokens = (w // 16) * (h // 16)
        if fill not in FILL_CHOICES:
            raise ValueError(f"fill must be one of {FILL_CHOICES}, got {fill!r}")
        cfg = WorldStereoConfig(width=w, height=h, depth_backend=depth_backend, generator=generator, fill=fill,
                                scene=bundle.scene, prompt=bundle.prompt, memory_size=KEYFRAMES_PER_MEMORY * tokens)
        with self._exclusive():
            use_given = bundle.depth is not None and depth_backend == "auto"
            estimator = None if use_given else make_depth_estimator(depth_backend, progress=progress)
            model = WorldStereo(cfg, depth_estimator=estimator)
            if bundle.kind == "panorama":
                info = model.start_panorama(bundle.image, depth=bundle.depth if use_given else None)
            else:
                align_to = bundle.paths[0].cameras if bundle.paths else None
                info = model.start(bundle.image, depth=bundle.depth if use_given else None, camera=bundle.camera,
                                   align_to=align_to)
            self._install(model, bundle)
        what = f"as a **panorama** ({info.num_views} views)" if info.kind == "panorama" else ""
        msg = (f"Loaded **{display_name(bundle.label)}** {what} at {w}x{h}: {info.num_points:,} points. {depth_status(info)} "
               f"Generator: {model.generator_message}.").replace("  ", " ")
        if info.kind == "panorama":
            msg += (" Looking around from the centre is exact at any depth; moving away from it needs real depth"
                    + (" (this depth is approximate)." if info.approximate else "."))
        filler = getattr(model.generator, "filler", None)
        if filler is not None:
            msg += f" Fill: {filler.message}."
        return StartSummary(bundle.label, msg, info.approximate, info.num_points, bundle.scene is not None,
                            [p.name for p in bundle.paths], self.engine)

    def _install(self, model: WorldStereo, bundle: InputBundle) -> None:
        """Make ``model`` (started) this session's exploration: fresh frames, editor and viewport."""
        self.model, self.bundle = model, bundle
        self.engine = EngineStatus.of(model)
        self.frames, self.records = [], {}
        self.current_frame_id, self._last_attention = None, None
        scene_mode = bundle.scene is not None
        panorama = bundle.kind == "panorama"
        preset = "look_around" if panorama else "eloop" if scene_mode else "orbit_right"
        self.editor = pe.PathEditorState(preset=preset, amount=1.0 if panorama else 0.33 if scene_mode else 0.25)
        vp = self.viewport
        vp.set_frames_visible(not panorama)  # from a panorama's centre, frames would sit right in front of the viewer
        vp.reset(model.start_camera, uint8_image(model.start_image), model.scene_depth, self._up_direction())
        vp.show_memory(model.context)
        if panorama:
            vp.view_from_inside(model.start_camera)
        self._refresh_editor_view()

    def load_snapshot(self, archive: str | Path) -> StartSummary:
        """Continue an exploration from an uploaded memory snapshot (the zip the Downloads give).

        The archive is unpacked into this session's folder with :func:`extract_snapshot_zip` (only the
        two snapshot files; no path outside; sizes bounded) and checked by ``WorldStereo.load``; the
        unpacked copy is removed at once.
        """
        from worldstereo.snapshot_checks import extract_snapshot_zip

        with self._exclusive():
            work = self.directory / "snapshot-upload"
            shutil.rmtree(work, ignore_errors=True)
            try:
                model = WorldStereo.load(extract_snapshot_zip(archive, work))
            finally:
                shutil.rmtree(work, ignore_errors=True)
            cfg = model.config
            bundle = InputBundle("memory snapshot", uint8_image(model.start_image), None, model.start_camera, cfg.scene,
                                 prompt=cfg.prompt)
            self._install(model, bundle)
        msg = (f"Loaded a **memory snapshot** at {cfg.width}x{cfg.height}: {model.ggm.num_points:,} points, "
               f"{len(model.keyframes)} keyframes, {len(model.paths)} paths explored. Generator: {model.generator_message}.")
        return StartSummary(bundle.label, msg, False, model.ggm.num_points, cfg.scene is not None, [], self.engine)

    def _up_direction(self) -> np.ndarray:
        assert self.model is not None
        if self.bundle is not None and self.bundle.scene is not None and self.bundle.kind != "panorama":
            from worldstereo.scenes import get_scene

            return get_scene(self.bundle.scene).up.numpy().astype(np.float64)
        R = self.model.start_camera.c2w[0, :3, :3].double().numpy()
        return R @ np.array([0.0, -1.0, 0.0])

    def _require_model(self) -> WorldStereo:
        if self.model is None:
            raise ValueError("load a sample or upload an image first")
        return self.model

    @staticmethod
    def _check_frames(num_frames: int, limit: int) -> int:
        n = int(num_frames)
        if not 2 <= n <= limit:
            raise ValueError(f"number of frames must be in 2..{limit}, got {num_frames}")
        return n

    # ------------------------------------------------------------------ path editor
    def set_path(self, mode: str, preset: str, amount: float, guard: bool, num_frames: int) -> str:
        """Update the editor from the page's controls and redraw the preview; returns a message."""
        self._require_model()
        self.num_frames = self._check_frames(num_frames, self.config.max_frames)
        with self._state_lock:
            ed = pe.set_preset(self.editor, preset, float(amount)) if mode == "preset" else self.editor
            self.editor = dataclasses.replace(ed, mode=mode, guard=bool(guard))
        return self._refresh_editor_view()

    def use_cameras(self, cameras: CameraParameters, max_keys: int | None = 12) -> str:
        """Make ``cameras`` (an official path or an imported file) the keyframes of the editor."""
        model = self._require_model()
        cams = cameras.to(dtype=torch.float64)
        if (cams.width, cams.height) != (model.config.width, model.config.height):
            cams = cams.resized(model.config.width, model.config.height)
        with self._state_lock:
            self.editor = pe.keyframes_from_cameras(self.editor, cams, max_keys=max_keys)
            self.num_frames = min(max(len(cameras), 2), self.config.max_frames)
        message = self._refresh_editor_view()
        self.frame_view(cams.camera_centers.detach().cpu().double().numpy())
        return message

    def frame_view(self, must_see: np.ndarray | None = None) -> None:
        """Move the viewer's camera to see the memory and all of ``must_see`` (M, 3) points (a path) from outside."""
        model = self._require_model()
        cloud = model.ggm.point_cloud
        self.viewport.frame_all(cloud[:: max(1, len(cloud) // 20000)].detach().cpu().double().numpy(), must_see)

    def current_path(self, num_frames: int | None = None) -> pe.PathResult:
        """The cameras Generate will use (the same call the preview makes)."""
        model = self._require_model()
        n = self.num_frames if num_frames is None else self._check_frames(num_frames, self.config.max_frames)
        return pe.path_cameras(self.editor, self._path_start(), model.scene_depth, n, model.ggm.point_cloud)

    def _path_start(self) -> CameraParameters:
        """Presets start from the last generated camera (a second path continues), else the start camera."""
        model = self._require_model()
        return model.paths[-1][len(model.paths[-1]) - 1] if model.paths else model.start_camera

    def _refresh_editor_view(self) -> str:
        vp = self.viewport
        ed = self.editor
        keys = [(k.T_world_camera, k.fov_y) for k in ed.keyframes]
        vp.show_keyframes(keys, ed.selected, self._on_move, self._on_select, self._on_pick)
        return self._redraw_preview()

    def _redraw_preview(self) -> str:
        try:
            res = self.current_path()
        except ValueError as exc:
            self.viewport.clear_path()
            return str(exc)
        curve = pe.spline_points(self.editor) if self.editor.mode == "keyframes" else None
        coverage = self.path_coverage(res.cameras)
        self.viewport.show_path(res.cameras, curve, coverage.labels)
        unknown = coverage.frames("unknown")
        if unknown:
            return (f"{res.message} Coverage: {len(unknown)} of {len(res.cameras)} frames look at space the memory does "
                    "not know yet (red); they are filled by the generator.")
        return res.message

    def path_coverage(self, cameras: CameraParameters):
        """The coverage guard of ``cameras`` against the current GGM (``worldstereo.coverage.PathCoverage``)."""
        from worldstereo.coverage import path_coverage

        model = self._require_model()
        return path_coverage(model.ggm.point_cloud, cameras)

    def _on_move(self, index: int, T: np.ndarray) -> None:
        with self._state_lock:
            self.editor = pe.move_keyframe(self.editor, index, T)
        self._redraw_preview()

    def _on_select(self, index: int) -> None:
        with self._state_lock:
            if self.editor.selected != index:
                self.editor = pe.select_keyframe(self.editor, index)

    def _on_pick(self, index: int) -> None:
        """A keyframe's frustum was clicked in the viewport: select it (its gizmo appears)."""
        self._on_select(index)
        self._refresh_editor_view()

    def _editor_callbacks(self) -> EditorCallbacks:
        def edit(fn) -> None:
            if self.model is None:
                return
            with self._state_lock:
                try:
                    self.editor = fn(self.editor)
                except ValueError:
                    return
            self._refresh_editor_view()

        def sel(fn):
            return lambda *a: edit(lambda s: fn(s, s.selected, *a) if s.selected is not None else s)

        def play() -> None:
            try:
                self.viewport.play(self.current_path().cameras)
            except ValueError:
                pass

        return EditorCallbacks(
            add_from_view=lambda T, fov: edit(lambda s: pe.add_keyframe(s, T, fov)),
            move=self._on_move,
            delete_selected=sel(pe.delete_keyframe),
            reorder_selected=sel(pe.reorder_keyframe),
            set_fov_selected=sel(pe.set_keyframe_fov),
            select=self._on_select,
            play=play,
        )

    # ------------------------------------------------------------------ generation
    def _exclusive(self):
        session = self

        class _Guard:
            def __enter__(self_inner):
                if not session._busy.acquire(blocking=False):
                    raise BusyError("this session is generating; wait for it or press Cancel")

            def __exit__(self_inner, *exc):
                session._busy.release()
                return False

        return _Guard()

    def set_display(self, mode: str) -> str:
        """Draw the memories as ``"Points"`` or ``"Splats"`` (a flat disc per point, :mod:`worldstereo.splats`); while
        a path runs, the change shows when it ends. Returns a status line."""
        if mode not in DISPLAY_MODES:
            raise ValueError(f"display must be one of {', '.join(DISPLAY_MODES)}, got {mode!r}")
        vp = self.viewport
        vp.display = mode.lower()
        if self.model is None or self.busy:
            return f"{mode}: shown when the current path ends." if self.busy else f"{mode}: shown once a scene loads."
        vp.end_inspection()
        vp.show_memory(self.model.context)
        if vp.display == "splats":
            return f"Splats: {vp.shown_splats:,} discs (at most {vp.max_splats:,}; neighbours merge beyond)."
        return f"Points: {vp.shown_points:,} drawn of {self.model.ggm.num_points:,}."

    def cancel(self) -> None:
        """Ask the running generation to stop after the current frame (memories stay consistent)."""
        self._cancel.set()

    def cancel_and_wait(self, timeout: float) -> str | None:
        """:meth:`cancel`, then wait up to ``timeout`` s for the generation to stop; its final status line, or None
        if it is still finishing its frame (the page then shows one answer, not a race of two)."""
        self.cancel()
        return self._final_status if self._stopped.wait(timeout) else None

    def generate(self, num_frames: int | None = None) -> Iterator[StreamUpdate]:
        """Generate the editor's path frame by frame; yields a :class:`StreamUpdate` per frame and a final one."""
        model = self._require_model()
        with self._exclusive():
            self._cancel.clear()
            self._stopped.clear()
            res = self.current_path(num_frames)
            cams = res.cameras
            n = len(cams)
            vp = self.viewport
            vp.show_path(cams, pe.spline_points(self.editor) if self.editor.mode == "keyframes" else None)
            vp.set_keyframes_visible(False)
            self.frames = []
            stream = model.generate(cams, num_frames=n)
            cancelled = False
            threads = shared_policy()
            try:
                # concurrent generations divide the thread budget; a step may resume in another of
                # Gradio's worker threads, so the share is applied again before each frame
                for step in _sharing(threads, stream):
                    rec = self._record(step)
                    vp.add_frame(step.frame_id, step.camera, rec.image, step.is_keyframe)
                    added = step.memory.points_added
                    if (step.memory.points_evicted or vp.needs_refresh) and vp.display == "points":
                        vp.show_cloud(model.ggm.point_cloud, model.ggm.point_colors)
                    elif added:
                        vp.show_new_points(step.frame_id, model.ggm.point_cloud[-added:], model.ggm.point_colors[-added:],
                                           step.memory.points_total)
                    self.touch()
                    status = (f"Frame {step.frame_index + 1} / {n} (path {step.path_index + 1}): "
                              f"{100 * step.hole_share:.0f}% new to the memory")
                    if step.blank:
                        status += " (nothing known was in view: the frame is the generator's fill)"
                    yield StreamUpdate(step.frame_index, n, rec, self._files(), list(self.history), False, False, status)
                    if self._cancel.is_set():
                        cancelled = True
                        break
            finally:
                stream.close()  # commits pending frames: the memories stay consistent
                vp.clear_path()
                vp.set_keyframes_visible(True)
                vp.show_memory(model.context)  # splats are made again once per path, not per frame
                release_memory()
            done = len(self.frames)
            status = (f"Cancelled after {done} / {n} frames; the memories hold them." if cancelled
                      else f"Done: {n} frames. Memory: {model.ggm.num_points:,} points, "
                           f"{len(model.keyframes)} keyframes, SSM {100 * float(model.ssm.occupancy):.0f}% full.")
            if res.message:
                status += " " + res.message
            self._final_status = status
            self._stopped.set()
            yield StreamUpdate(max(done - 1, 0), n, self.frames[-1] if self.frames else None, self._files(),
                               list(self.history), True, cancelled, status)

    def _record(self, step) -> FrameRecord:
        img = step.image_uint8()
        f = self.directory / "frames" / f"frame_{step.frame_id:05d}.png"
        f.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(f) as tmp:
            Image.fromarray(img).save(tmp)
        rec = FrameRecord(step.frame_id, step.path_index, img, step.camera, step.attention, step.is_keyframe, f)
        self.frames.append(rec)
        self.records[step.frame_id] = rec
        self.current_frame_id = rec.frame_id
        return rec

    def _files(self) -> list[str]:
        return [str(r.file) for r in self.frames]

    def undo(self) -> str:
        """Take the last path back (both memories, frames, frustums)."""
        model = self._require_model()
        with self._exclusive():
            if not model.can_undo:
                return "Nothing to undo."
            last = model.path_counter - 1
            model.undo()
            gone = [fid for fid, r in self.records.items() if r.path_index == last]
            for fid in gone:
                self.records.pop(fid)
            self.frames = [r for r in self.records.values() if r.path_index == last - 1]
            self.current_frame_id = self.frames[-1].frame_id if self.frames else None
            vp = self.viewport
            vp.remove_frames(gone)
            vp.show_memory(model.context)
            self._redraw_preview()
            return f"Undone path {last + 1}: {model.ggm.num_points:,} points, {len(model.keyframes)} keyframes."

    def reset(self, size: str, depth_backend: str, generator: str, fill: str = "auto") -> StartSummary:
        """Start over from the same input."""
        if self.bundle is None:
            raise ValueError("nothing to reset: load a sample or upload an image first")
        return self.load(self.bundle, size, depth_backend, generator, fill=fill)

    # ------------------------------------------------------------------ downloads
    def export(self) -> ExportFiles:
        model = self._require_model()
        with self._exclusive():
            return export_all(self.directory / "downloads", model, [r.image for r in self.frames])

    def downloads(self) -> list[str]:
        """What the Downloads offer now, in a fixed order: the prepared files and a built world's dataset zip."""
        d = self.directory / "downloads"
        return [str(d / n) for n in DOWNLOAD_NAMES if (d / n).is_file()]

    # ------------------------------------------------------------------ attention
    def frame(self, frame_id: int | None) -> FrameRecord:
        if not self.records:
            raise ValueError("generate a path first")
        if frame_id is None or int(frame_id) not in self.records:
            return self.frames[-1] if self.frames else self.records[max(self.records)]
        return self.records[int(frame_id)]

    def show_frame(self, frame_id: int) -> FrameRecord:
        """Make generated frame ``frame_id`` the current one (what the page shows; 3D clicks ask it first)."""
        rec = self.frame(frame_id)
        self.current_frame_id = rec.frame_id
        return rec


def _sharing(policy, stream: Iterator) -> Iterator:
    """``stream``'s items, each computed in the calling thread with its current share of ``policy``'s threads."""
    with policy.generation():
        while True:
            policy.refresh()
            try:
                item = next(stream)
            except StopIteration:
                return
            yield item
