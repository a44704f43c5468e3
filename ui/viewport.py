"""The 3D viewport of one session: a viser server and what its scene shows.

Scene tree (viser node names):

* ``/ggm/points``: level-of-detail subset of the Global-Geometric Memory (``lod.view_subset``);
  ``/ggm/recent/<k>``: points added since the last full refresh; ``/ggm/new``: the last frame's new points,
  highlighted until the next frame.
* ``/frames/f<frame id>``: a frustum per generated frame, textured with the frame (keyframes outlined orange).
* ``/path/preview/...``: the camera path to be generated (frustums at exactly the cameras that will be generated,
  and a curve); ``/path/keys/k<i>``: a transform gizmo per editor keyframe.
* ``/attention/...``: lines from a query point to the memory correspondences it attended to.

Cameras are OpenCV (x right, y down, z forward), poses camera-to-world; viser uses the same convention for
frustums and for the client camera (``wxyz`` is the camera-to-world rotation).
"""

from __future__ import annotations

import math
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
import viser
import viser.transforms as vtf

from ui.lod import ViewCloud, colors_uint8, view_subset
from ui.viewport_inspect import InspectionDrawing
from worldstereo.camera import CameraParameters

HIGHLIGHT = np.array([255, 230, 40], dtype=np.uint8)
KEYFRAME_COLOR = (255, 140, 0)
FRAME_COLOR = (60, 60, 60)
PREVIEW_COLOR = (30, 120, 255)
#: path preview colours by coverage (worldstereo.coverage labels): known, partly known, unknown
COVERAGE_COLORS = {"known": (40, 180, 80), "partly": (240, 170, 20), "unknown": (220, 40, 40)}
RECENT_LIMIT = 60_000
#: vertical field of view of viser's viewer camera (its default, 75 degrees; a scene's view narrows it to its photo's)
VIEWER_FOV = math.radians(75.0)
#: the viewer's field of view is the start camera's times this (so the lifted photo fills most of the view from
#: just behind the path's cameras), within these bounds (degrees)
VIEWER_FOV_FACTOR = 1.0
VIEWER_FOV_RANGE = (35.0, 75.0)
#: width / height of the viewport on the page (its iframe: two thirds of the page width, at most 560 px high)
VIEWER_ASPECT = 1.7
#: the framed cloud's 5th-95th percentile extent fills this share of the view's half-width and half-height
FRAME_FILL = 0.9
#: a generated frame's frustum: size (x scene depth) and the opacity of its image (the scene shows through)
FRAME_SCALE = 0.03
FRAME_ALPHA = 170
#: the framed view looks along the start camera's direction from behind it and this much above (x the distance
#: back): the cloud, a lifted photo, faces the viewer and fills the view as the photo did
VIEW_RISE = 0.25
#: a path keyframe's frustum in the editor (x scene depth)
KEYFRAME_SCALE = 0.03
#: points are drawn this many times their median spacing across (so that neighbours touch, without gaps)
POINT_SPACING_FACTOR = 1.6
#: the viewport's splats are at least this share of the points' drawn size wide (sigma; they fade out near 2.4 sigma)
DISPLAY_SIGMA = 0.5


def free_port() -> int:
    """A free TCP port on the loopback interface."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pose_of(camera: CameraParameters, index: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(wxyz (4,), position (3,)) of camera ``index``'s camera-to-world pose (viser's frustum/camera convention)."""
    T = camera.c2w[index].detach().cpu().double().numpy()
    return vtf.SO3.from_matrix(T[:3, :3]).wxyz, T[:3, 3]


def pose_matrix(wxyz: np.ndarray, position: np.ndarray) -> np.ndarray:
    """(4, 4) camera-to-world from viser's (wxyz, position)."""
    T = np.eye(4)
    T[:3, :3] = vtf.SO3(np.asarray(wxyz, dtype=np.float64)).as_matrix()
    T[:3, 3] = np.asarray(position, dtype=np.float64)
    return T


def thumbnail(image: np.ndarray, max_width: int = 160, alpha: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 downscaled to at most ``max_width`` wide (texture of a frustum); with ``alpha``, (h, w, 4) RGBA of
    that opacity (viser draws a frustum's image with its alpha)."""
    h, w = image.shape[:2]
    if w > max_width:
        image = cv2.resize(image, (max_width, max(1, round(h * max_width / w))), interpolation=cv2.INTER_AREA)
    if alpha is None:
        return image
    return np.concatenate([image, np.full(image.shape[:2] + (1,), alpha, np.uint8)], axis=2)


def point_spacing(points: np.ndarray, samples: int = 2000) -> float:
    """Median distance from a point of ``points`` (N, 3) to its nearest neighbour (over a sample; 0 for < 2 points)."""
    from scipy.spatial import cKDTree

    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    if len(pts) < 2:
        return 0.0
    rng = np.random.default_rng(0)
    probe = pts[rng.choice(len(pts), size=min(samples, len(pts)), replace=False)]
    d, _ = cKDTree(pts).query(probe, k=2)
    return float(np.median(d[:, 1]))


def framing_distance(points: np.ndarray, centre: np.ndarray, direction: np.ndarray, up: np.ndarray,
                     fov_y: float, aspect: float, fill: float = FRAME_FILL) -> float:
    """How far along ``direction`` (unit, from ``centre`` to the eye) the viewer stands so that the points' 5th-95th
    percentile extent fills ``fill`` of the view (the nearest such distance; points behind the eye do not count)."""
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    z_axis = -direction / np.linalg.norm(direction)
    x_axis = np.cross(z_axis, up)
    if np.linalg.norm(x_axis) < 1e-9:
        x_axis = np.cross(z_axis, np.array([1.0, 0.0, 0.0]))
    x_axis /= np.linalg.norm(x_axis)
    y_axis = np.cross(z_axis, x_axis)
    rel = pts - centre
    x, y, z = rel @ x_axis, rel @ y_axis, rel @ z_axis
    half_v = math.tan(fov_y / 2)
    half_h = half_v * aspect
    extent_x = np.percentile(np.abs(x), 95)
    extent_y = np.percentile(np.abs(y), 95)

    def fits(dist: float) -> bool:
        depth = z + dist
        front = depth > 1e-6
        if not front.any():
            return True
        return (np.percentile(np.abs(x[front]) / depth[front], 95) <= fill * half_h
                and np.percentile(np.abs(y[front]) / depth[front], 95) <= fill * half_v)

    hi = max(extent_x / (fill * half_h), extent_y / (fill * half_v), 1e-6) + float(np.percentile(np.abs(z), 95))
    lo = 0.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if fits(mid) else (mid, hi)
    return hi


@dataclass
class EditorCallbacks:
    """What the viewport's path-editor panel calls (all short; the logic lives in ``ui.path_editor``)."""

    add_from_view: Callable[[np.ndarray, float], None]
    """(T_world_camera (4, 4), fov_y radians) of the client camera."""
    move: Callable[[int, np.ndarray], None]
    delete_selected: Callable[[], None]
    reorder_selected: Callable[[int], None]
    set_fov_selected: Callable[[float], None]
    select: Callable[[int], None]
    play: Callable[[], None]


class Viewport(InspectionDrawing):
    """One viser server (loopback only) and the scene of one session (the inspector's drawing: ``InspectionDrawing``)."""

    def __init__(self, max_points: int = 300_000, max_splats: int = 100_000) -> None:
        self.max_points = max_points
        self.max_splats = max_splats
        #: how the memories are drawn: "points" (the live cloud) or "splats" (redrawn after each path)
        self.display = "points"
        self.shown_splats = 0
        self.server = viser.ViserServer(host="127.0.0.1", port=free_port(), verbose=False)
        self.port = self.server.get_port()
        self.scene_scale = 1.0
        self._forward, self._up = np.array([0.0, 0.0, 1.0]), np.array([0.0, -1.0, 0.0])
        self._recent: list[str] = []
        self._recent_points = 0
        self._key_handles: list[viser.TransformControlsHandle] = []
        self._lock = threading.RLock()
        self.shown_points = 0
        self._fov_slider: viser.GuiSliderHandle | None = None
        self._playing = threading.Event()
        self.previewed: CameraParameters | None = None
        self.previewed_coverage: list[str] | None = None
        """The cameras of the last path preview (exactly what the viewport drew)."""
        self.attention_lines = 0
        """Attention lines drawn now (0 when none are shown)."""
        self._node_clicked = -1e9
        self.frames_visible = True
        self._frustums: dict[str, Any] = {}  # scene name -> handle of every frame and preview frustum shown
        """Whether generated frames' (and the path preview's) frustums are drawn (:meth:`set_frames_visible`)."""
        self._point_size = 0.006
        self.viewer_fov = VIEWER_FOV
        """The viewer's vertical field of view (radians): the start camera's, a little wider (:meth:`reset`)."""
        # the control panel starts minimised to its title bar: the 3D view is unobstructed, the path
        # editor one click away (replayed to every client that connects later)
        self.server.gui.configure_theme(control_width="medium", show_share_button=False)
        self.server.gui.main_panel.minimize()

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self._playing.clear()
        self.server.stop()

    @property
    def num_clients(self) -> int:
        return len(self.server.get_clients())

    # ------------------------------------------------------------------ scene
    def reset(self, start_camera: CameraParameters, start_image: np.ndarray, scene_depth: float, up: np.ndarray) -> None:
        """Clear the scene for a new exploration: world up, start frustum, initial view behind the start camera."""
        with self._lock:
            self.server.scene.reset()
            self._recent, self._recent_points, self._key_handles, self._frustums = [], 0, [], {}
            self.scene_scale = float(scene_depth)
            # no distance fog: it washed out scenes tens of units deep (a landscape scaled to its camera file)
            self.server.scene.configure_fog(1.0, 2.0, enabled=False)
            self.server.scene.set_up_direction(tuple(float(v) for v in up))
            T = start_camera.c2w[0].double().numpy()
            self._forward, self._up = T[:3, 2], np.asarray(up, dtype=np.float64)
            lo, hi = VIEWER_FOV_RANGE
            self.viewer_fov = math.radians(min(max(math.degrees(float(start_camera.fov_y[0])) * VIEWER_FOV_FACTOR, lo), hi))
            pos = T[:3, 3]
            self.set_view(pos - 0.6 * scene_depth * self._forward + 0.35 * scene_depth * self._up,
                           pos + scene_depth * self._forward)
            self.add_frame(0, start_camera, start_image, keyframe=True)

    def set_view(self, eye: np.ndarray, look: np.ndarray, fov: float | None = None) -> None:
        """Put the viewer's camera (new and connected clients) at ``eye`` looking at ``look`` (``fov``: vertical, radians;
        default the scene's, :attr:`viewer_fov`)."""
        fov = self.viewer_fov if fov is None else float(fov)
        for target in [self.server.initial_camera, *[c.camera for c in self.server.get_clients().values()]]:
            target.up = tuple(float(v) for v in self._up)
            target.position = tuple(float(v) for v in eye)
            target.look_at = tuple(float(v) for v in look)
            target.fov = fov

    def view_from_inside(self, camera: CameraParameters) -> None:
        """Put the viewer inside the cloud, a little behind and above ``camera`` and looking along it (a panorama's
        cloud surrounds its centre; from just behind it, the path's frustums sit small in front of the viewer)."""
        T = camera.c2w[0].double().numpy()
        eye = T[:3, 3] - 0.35 * self.scene_scale * T[:3, 2] + 0.12 * self.scene_scale * self._up
        with self._lock:
            self.set_view(eye, T[:3, 3] + self.scene_scale * T[:3, 2])

    def frame_all(self, points: np.ndarray, must_see: np.ndarray | None = None, fov_y: float | None = None,
                  aspect: float = VIEWER_ASPECT) -> None:
        """View ``points`` (N, 3) (the cloud) from behind and a little above the start camera's direction, as near as
        lets their 5th-95th percentile extent fill :data:`FRAME_FILL` of the view (:func:`framing_distance`): the
        cloud fills most of the view. The viewer also stays behind every ``must_see`` point (M, 3) (a path's camera
        centres), so a path that turns around (the landscape's official path sweeps 100 degrees) grows the cloud in
        front of the viewer, not around it."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
        extra = np.zeros((0, 3)) if must_see is None else np.asarray(must_see, dtype=np.float64).reshape(-1, 3)
        if len(pts) == 0:
            pts = extra
        if len(pts) == 0:
            return
        fov_y = self.viewer_fov if fov_y is None else fov_y
        lo, hi = np.percentile(pts, [5, 95], axis=0)
        centre = (lo + hi) / 2
        direction = -self._forward + VIEW_RISE * self._up
        direction /= np.linalg.norm(direction)
        dist = framing_distance(pts, centre, direction, self._up, fov_y, aspect)
        if len(extra):  # behind the path's cameras, by a twentieth of the scene depth
            dist = max(dist, float(((extra - centre) @ direction).max()) + 0.05 * self.scene_scale)
        with self._lock:
            self.set_view(centre + direction * dist, centre)

    def show_cloud(self, points: torch.Tensor, colors: torch.Tensor) -> ViewCloud:
        """Replace the whole cloud by its LOD subset (drops the recent/new chunks)."""
        cloud = view_subset(points, colors, self.max_points)
        with self._lock:
            self._point_size = POINT_SPACING_FACTOR * point_spacing(cloud.points) or 0.006 * self.scene_scale
            self._replace_points(cloud)
        return cloud

    def _replace_points(self, cloud: ViewCloud) -> None:
        """Draw ``cloud`` as the whole cloud at :attr:`point_size`, dropping the recent/new chunks (lock held)."""
        for name in self._recent:
            self.server.scene.remove_by_name(name)
        self._recent, self._recent_points = [], 0
        self.server.scene.remove_by_name("/ggm/new")
        self.server.scene.add_point_cloud("/ggm/points", cloud.points, cloud.colors, point_size=self.point_size,
                                          precision="float32")
        self.shown_points = len(cloud.points)

    def show_splats(self, centers: np.ndarray, covariances: np.ndarray, rgbs: np.ndarray, opacities: np.ndarray) -> None:
        """Show the memories as Gaussian splats in place of the points: (N, 3) centres, (N, 3, 3) covariances,
        (N, 3) RGB in [0, 1], (N, 1) opacities (at most :data:`MAX_VIEW_SPLATS`: the session merges to it)."""
        with self._lock:
            for name in self._recent:
                self.server.scene.remove_by_name(name)
            self._recent, self._recent_points = [], 0
            for name in ("/ggm/new", "/ggm/points"):
                self.server.scene.remove_by_name(name)
            self.server.scene.add_gaussian_splats("/ggm/splats", centers=centers.astype(np.float32),
                                                  covariances=covariances.astype(np.float32),
                                                  rgbs=rgbs.astype(np.float32), opacities=opacities.astype(np.float32))
            self.shown_points = 0
            self.shown_splats = len(centers)

    def hide_splats(self) -> None:
        """Back to points (the caller redraws the cloud)."""
        with self._lock:
            self.server.scene.remove_by_name("/ggm/splats")
            self.shown_splats = 0

    def show_memory(self, ctx: Any) -> None:
        """Draw a generation context's GGM as :attr:`display` says: the points (a subset of at most
        :attr:`max_points`), or splats merged to at most :attr:`max_splats` (:mod:`worldstereo.splats`)."""
        from worldstereo.splats.sources import splats_from_context

        ggm = ctx.ggm
        if self.display != "splats" or ggm.num_points == 0:
            self.hide_splats()
            self.show_cloud(ggm.point_cloud, ggm.point_colors)
            return
        g, _ = splats_from_context(ctx, self.max_splats)
        # drawn at least as wide as the points would be: a disc's in-plane sigma of at least DISPLAY_SIGMA of the
        # points' drawn size reaches past a point's square edge before it fades (the file keeps the fitted sizes)
        floor = DISPLAY_SIGMA * POINT_SPACING_FACTOR * point_spacing(g.means.numpy())
        g.log_scales[:, :2] = torch.clamp_min(g.log_scales[:, :2], math.log(max(floor, 1e-12)))
        self.show_splats(g.means.numpy(), g.covariances().numpy(), g.colors.clamp(0, 1).numpy(),
                         g.opacities.numpy()[:, None])

    @property
    def point_size(self) -> float:
        """Size of the drawn points (world units): :data:`POINT_SPACING_FACTOR` times the shown cloud's median spacing,
        so that neighbours touch: a panorama's cloud reads as surfaces from inside, a photo's without gaps."""
        return self._point_size

    def show_new_points(self, key: int, points: torch.Tensor, colors: torch.Tensor, total: int) -> None:
        """Show the points a frame added, highlighted, and settle the previous highlight into true colours.

        ``total`` is the memory's point count; the shown count stays within ``max_points``.
        """
        with self._lock:
            budget = max(self.max_points - self.shown_points, 0)
            cloud = view_subset(points, colors, max(min(budget, len(points)), 1)) if len(points) else None
            self.server.scene.remove_by_name("/ggm/new")
            if cloud is None or budget == 0:
                return
            name = f"/ggm/recent/{key}"
            self.server.scene.add_point_cloud(name, cloud.points, cloud.colors, point_size=self.point_size, precision="float32")
            self._recent.append(name)
            self._recent_points += len(cloud.points)
            self.shown_points += len(cloud.points)
            hl = ((cloud.colors.astype(np.uint16) + HIGHLIGHT) // 2).astype(np.uint8)
            self.server.scene.add_point_cloud(
                "/ggm/new", cloud.points, hl, point_size=1.8 * self.point_size, precision="float32"
            )

    @property
    def needs_refresh(self) -> bool:
        return self._recent_points > RECENT_LIMIT

    def add_frame(self, frame_id: int, camera: CameraParameters, image: np.ndarray, keyframe: bool) -> None:
        """A small frustum at the frame's camera, textured with the frame, see-through (hidden with the frames switch)."""
        wxyz, pos = pose_of(camera)
        fov = float(camera.fov_y[0])
        name = f"/frames/f{frame_id}"
        self._frustums[name] = self.server.scene.add_camera_frustum(
            name, fov=fov, aspect=camera.width / camera.height, scale=FRAME_SCALE * self.scene_scale,
            image=thumbnail(image, alpha=FRAME_ALPHA), format="png", wxyz=wxyz, position=pos,
            color=KEYFRAME_COLOR if keyframe else FRAME_COLOR, thickness=0.0015 * self.scene_scale,
            visible=self.frames_visible,
        )

    def set_frames_visible(self, visible: bool) -> None:
        """Show or hide every frustum of the generated frames and of the path preview (the curve stays)."""
        with self._lock:
            self.frames_visible = bool(visible)
            for handle in self._frustums.values():
                handle.visible = self.frames_visible

    def remove_frames(self, frame_ids: list[int]) -> None:
        for f in frame_ids:
            self.server.scene.remove_by_name(f"/frames/f{f}")
            self._frustums.pop(f"/frames/f{f}", None)

    # ------------------------------------------------------------------ path preview and editor
    def show_path(
        self, cameras: CameraParameters, curve: np.ndarray | None = None, coverage: list[str] | None = None
    ) -> None:
        """Frustums at exactly ``cameras`` and a curve through ``curve`` (M, 3) (default: the camera centres).

        With ``coverage`` (one label per camera: ``known`` / ``partly`` / ``unknown``, see
        ``worldstereo.coverage``) frustums and curve are coloured by how much of each view the memory knows.
        """
        with self._lock:
            self._clear_preview()
            self.previewed = cameras
            self.previewed_coverage = coverage
            n = len(cameras)
            colors = [COVERAGE_COLORS[c] for c in coverage] if coverage is not None and len(coverage) == n else None
            step = max(1, n // 12)
            for i in range(0, n, step):
                wxyz, pos = pose_of(cameras, i)
                self._frustums[f"/path/preview/f{i}"] = self.server.scene.add_camera_frustum(
                    f"/path/preview/f{i}", fov=float(cameras.fov_y[i]), aspect=cameras.width / cameras.height,
                    scale=FRAME_SCALE * self.scene_scale, wxyz=wxyz, position=pos,
                    color=colors[i] if colors else PREVIEW_COLOR, thickness=0.0015 * self.scene_scale,
                    visible=self.frames_visible,
                )
            c = cameras.camera_centers.detach().cpu().double().numpy() if curve is None or len(curve) < 2 else curve
            if len(c) >= 2:
                seg = np.stack([c[:-1], c[1:]], axis=1).astype(np.float32)
                seg_colors: Any = PREVIEW_COLOR
                if colors:
                    # each segment takes the colour of the path frame nearest its start
                    frame_of = np.round(np.linspace(0, n - 1, len(seg))).astype(int)
                    seg_colors = np.repeat(np.array([colors[i] for i in frame_of], np.uint8)[:, None], 2, axis=1)
                self.server.scene.add_line_segments(
                    "/path/preview/curve", seg, seg_colors, thickness=0.004 * self.scene_scale
                )

    def clear_path(self) -> None:
        with self._lock:
            self._clear_preview()

    def _clear_preview(self) -> None:
        self.server.scene.remove_by_name("/path/preview")
        for name in [n for n in self._frustums if n.startswith("/path/preview/")]:
            del self._frustums[name]

    def show_keyframes(
        self, keyframes: list[tuple[np.ndarray, float]], selected: int | None, on_move: Callable[[int, np.ndarray], None],
        on_select: Callable[[int], None], on_pick: Callable[[int], None] | None = None,
    ) -> None:
        """Each keyframe ``(T_world_camera, fov_y)`` as a small frustum; only the ``selected`` one carries a transform
        gizmo (drags call ``on_move(i, T)``). Clicking another keyframe's frustum calls ``on_pick(i)`` (select it,
        which moves the gizmo there): twelve gizmos at once hid the scene."""
        with self._lock:
            self.server.scene.remove_by_name("/path/keys")
            self._key_handles = []
            for i, (T, fov) in enumerate(keyframes):
                wxyz = vtf.SO3.from_matrix(T[:3, :3]).wxyz
                name = f"/path/keys/k{i}"
                if i == selected:
                    handle = self.server.scene.add_transform_controls(
                        name, scale=2 * KEYFRAME_SCALE * self.scene_scale, wxyz=wxyz, position=T[:3, 3])

                    def _moved(event: viser.TransformControlsEvent, i: int = i) -> None:
                        on_select(i)
                        on_move(i, pose_matrix(event.target.wxyz, event.target.position))

                    handle.on_update(_moved)
                else:
                    handle = self.server.scene.add_frame(name, show_axes=False, wxyz=wxyz, position=T[:3, 3])
                self._key_handles.append(handle)
                frustum = self.server.scene.add_camera_frustum(
                    f"{name}/frustum", fov=fov, aspect=4 / 3, scale=KEYFRAME_SCALE * self.scene_scale,
                    color=(255, 40, 40) if i == selected else (200, 90, 90), thickness=0.0015 * self.scene_scale,
                )
                if on_pick is not None and i != selected:
                    def _picked(_event, i: int = i) -> None:
                        self._node_clicked = time.monotonic()
                        on_pick(i)

                    frustum.on_click(_picked)

    def set_keyframes_visible(self, visible: bool) -> None:
        """Show or hide the keyframe gizmos (hidden while a path is generated: the frames are what to watch)."""
        with self._lock:
            for handle in self._key_handles:
                handle.visible = bool(visible)

    def client_view(self) -> tuple[np.ndarray, float] | None:
        """(T_world_camera (4, 4), vertical fov) of the first connected client's camera, or None."""
        clients = list(self.server.get_clients().values())
        if not clients:
            return None
        cam = clients[0].camera
        return pose_matrix(cam.wxyz, cam.position), float(cam.fov)

    def play(self, cameras: CameraParameters, fps: float = 8.0) -> None:
        """Fly every client's camera along ``cameras`` (in a background thread)."""
        poses = [pose_of(cameras, i) for i in range(len(cameras))]
        fovs = [float(f) for f in cameras.fov_y]
        self._playing.set()

        def run() -> None:
            for (wxyz, pos), fov in zip(poses, fovs, strict=True):
                if not self._playing.is_set():
                    return
                for client in self.server.get_clients().values():
                    with client.atomic():
                        client.camera.wxyz = wxyz
                        client.camera.position = pos
                        client.camera.fov = fov
                time.sleep(1.0 / fps)
            self._playing.clear()

        threading.Thread(target=run, daemon=True, name="viewport-play").start()

    def build_editor_panel(self, cb: EditorCallbacks) -> None:
        """The camera-path editor panel of the viewport (GUI on the server: one viewport per session)."""
        gui = self.server.gui
        with gui.add_folder("Camera path"):
            gui.add_markdown("Keyframes: add from the current view, drag the gizmos; Generate uses this path "
                             "when the page's path source is *keyframes*.")
            add = gui.add_button("Add keyframe from view", icon=viser.Icon.CAMERA_PLUS)
            delete = gui.add_button("Delete selected", icon=viser.Icon.TRASH)
            earlier = gui.add_button("Move earlier")
            later = gui.add_button("Move later")
            self._fov_slider = gui.add_slider("Keyframe FOV (deg)", min=15.0, max=120.0, step=1.0, initial_value=60.0)
            play = gui.add_button("Play path", icon=viser.Icon.PLAYER_PLAY)

        @add.on_click
        def _(_: viser.GuiEvent) -> None:
            view = self.client_view()
            if view is not None:
                cb.add_from_view(view[0], view[1])

        delete.on_click(lambda _: cb.delete_selected())
        earlier.on_click(lambda _: cb.reorder_selected(-1))
        later.on_click(lambda _: cb.reorder_selected(+1))
        self._fov_slider.on_update(lambda _: cb.set_fov_selected(np.radians(self._fov_slider.value)))
        play.on_click(lambda _: cb.play())

    # ------------------------------------------------------------------ attention
    def on_scene_click(self, callback: Callable[[np.ndarray, np.ndarray], None]) -> None:
        """Call ``callback(ray_origin (3,), ray_direction (3,))`` (world frame) for each click in the 3D view
        (a click, not a drag: orbiting is unaffected)."""

        @self.server.scene.on_click()
        def _(event: viser.SceneClickEvent) -> None:
            time.sleep(0.1)  # a click on a keyframe frustum (dispatched alongside) selects it: not a point query
            if time.monotonic() - self._node_clicked < 0.6:
                return
            callback(np.asarray(event.ray_origin, dtype=np.float64), np.asarray(event.ray_direction, dtype=np.float64))

    def show_attention(
        self, query: np.ndarray, targets: np.ndarray, weights: np.ndarray, views: np.ndarray | None = None
    ) -> None:
        """What a query attended to: lines from ``query`` (3,) to ``targets`` (k, 3), the attended patches' 3D
        points, coloured by ``weights`` (k,) (inferno-like ramp, brightest = most weight; 3 px); with ``views``
        (k, 3), the centres of the stored keyframes those patches came from, thinner lines from each patch
        to its view, so a short line to a nearby patch still shows which stored frame it was."""
        with self._lock:
            self.server.scene.remove_by_name("/attention")
            self.attention_lines = 0
            ok = np.isfinite(targets).all(axis=1) & (weights > 0)
            if views is not None:
                ok &= np.isfinite(views).all(axis=1)
            if not np.isfinite(query).all() or not ok.any():
                return
            t, w = targets[ok], weights[ok]
            wn = w / max(float(w.max()), 1e-9)
            # the weakest line is dark red, not black
            ramp = cv2.applyColorMap(((0.35 + 0.65 * wn) * 255).astype(np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1]
            cols = np.repeat(ramp[:, None, :], 2, axis=1).astype(np.uint8)
            seg = np.stack([np.repeat(query[None], len(t), 0), t], axis=1).astype(np.float32)
            self.server.scene.add_line_segments("/attention/lines", seg, cols, thickness=3.0, thickness_units="screen")
            if views is not None:
                to_view = np.stack([t, views[ok]], axis=1).astype(np.float32)
                self.server.scene.add_line_segments("/attention/views", to_view, cols, thickness=1.2,
                                                    thickness_units="screen")
            self.attention_lines = len(seg)
            self.server.scene.add_point_cloud(
                "/attention/query", query[None].astype(np.float32), np.array([[0, 255, 255]], np.uint8),
                point_size=4 * self.point_size, precision="float32",
            )
            self.server.scene.add_point_cloud(
                "/attention/targets", t.astype(np.float32), colors_uint8(ramp), point_size=3 * self.point_size,
                precision="float32",
            )

    def clear_attention(self) -> None:
        self.server.scene.remove_by_name("/attention")
        self.attention_lines = 0
