"""What a new page shows and does without a browser: the example gallery, the engine line, and attention asked
by clicking a 3D point (the ray picks a memory point; a generated frame that sees it answers)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from ui.attention_view import pick_point
from ui.config import AppConfig
from ui.engine_status import EngineStatus, depth_label
from ui.samples import (
    DEFAULT_SAMPLE,
    EXAMPLE_PREFIX,
    SCENE_PREFIX,
    THUMBNAIL_SIZE,
    list_samples,
    load_sample,
    load_upload,
    sample_caption,
    sample_thumbnail,
)
from ui.sessions import SessionManager


@pytest.fixture
def manager(tmp_path):
    m = SessionManager(AppConfig(temp_root=tmp_path / "sessions", max_sessions=2, max_view_points=20000))
    yield m
    m.shutdown()


# ------------------------------------------------------------------ gallery
def test_gallery_lists_real_photos_first_with_thumbnails(tmp_path):
    names = list_samples()
    assert names[0] == DEFAULT_SAMPLE
    kinds = [n.startswith(EXAMPLE_PREFIX) for n in names]
    assert kinds == sorted(kinds, reverse=True) and any(kinds) and not all(kinds)  # photos, then scenes
    for name in names:
        thumb = sample_thumbnail(name, tmp_path)
        with Image.open(thumb) as im:
            assert im.format == "JPEG" and im.size == THUMBNAIL_SIZE
            pixels = np.asarray(im.convert("RGB")).astype(np.int16)
        assert pixels.std() > 10  # a picture, not a blank tile
        mtime = thumb.stat().st_mtime_ns
        assert sample_thumbnail(name, tmp_path).stat().st_mtime_ns == mtime  # made once
    # the photo's thumbnail is the photo (centre crop), not some other picture
    ex = load_sample(DEFAULT_SAMPLE, 384, 288)
    ref = np.asarray(Image.fromarray(ex.image).resize((THUMBNAIL_SIZE[0], round(ex.image.shape[0] * THUMBNAIL_SIZE[0]
                                                                               / ex.image.shape[1]))), dtype=np.float64)
    top = (ref.shape[0] - THUMBNAIL_SIZE[1]) // 2
    got = np.asarray(Image.open(sample_thumbnail(DEFAULT_SAMPLE, tmp_path)).convert("RGB"), dtype=np.float64)
    assert np.abs(got - ref[top:top + THUMBNAIL_SIZE[1]]).mean() < 12


def test_captions():
    assert sample_caption(DEFAULT_SAMPLE) == "Bicycle"
    assert sample_caption(EXAMPLE_PREFIX + "photorealistic-outdoor-verdant_landscape-050") == "Landscape"
    assert sample_caption(SCENE_PREFIX + "room") == "Room*"
    assert sample_caption(EXAMPLE_PREFIX + "photorealistic-outdoor-forest_path-012") == "Forest path"
    with pytest.raises(ValueError, match="unknown sample"):
        sample_thumbnail(EXAMPLE_PREFIX + "nope", __import__("pathlib").Path("/tmp"))


# ------------------------------------------------------------------ engine line
def test_depth_labels():
    assert depth_label("moge", False, "Ruicheng/moge-2-vitl-normal") == "MoGe-2 ViT-L"
    assert depth_label("moge", False, "Ruicheng/moge-2-vits-normal") == "MoGe-2 ViT-S"
    assert depth_label("prior", True, "prior") == "layout prior (approximate)"
    assert depth_label("given", False, "given") == "given depth"


def test_engine_line_says_what_runs_and_changes_with_the_input(manager):
    s = manager.get("a")
    s.load(load_sample(DEFAULT_SAMPLE, 256, 192), "256x192", fill="auto")
    e = s.engine
    # the tests switch the Hub off: depth falls back to the prior, LaMa to Telea, each with its reason
    assert e.depth == "layout prior (approximate)" and e.generator == "warp" and e.fill == "Telea"
    assert e.scale == pytest.approx(s.model.start_info.scale_factor) and e.scale != 1.0
    assert e.fallbacks == ("MoGe-2 -> layout prior: the Hub is switched off (HF_HUB_OFFLINE)",
                           "LaMa -> Telea: the Hub is switched off (HF_HUB_OFFLINE)")
    md = e.markdown()
    assert f"scaled x{e.scale:.3g} to the camera file" in md and "**Device** CPU" in md and "Fallback" in md
    # a procedural scene: exact depth, no scaling; fill none asked: no fill fallback
    s.load(load_sample(SCENE_PREFIX + "tabletop", 256, 192), "256x192", fill="none")
    e2 = s.engine
    assert (e2.depth, e2.scale, e2.fill, e2.fallbacks) == ("given depth", 1.0, "none", ())
    assert "scaled" not in e2.markdown() and "Fallback" not in e2.markdown()
    assert EngineStatus.of(s.model) == e2


# ------------------------------------------------------------------ 3D picking
def test_pick_point_takes_the_nearest_point_on_the_ray():
    rng = np.random.default_rng(0)
    pts = rng.uniform(-1, 1, (5000, 3)).astype(np.float32) + np.array([0, 0, 5], np.float32)
    origin = np.array([0.2, -0.1, 0.0])
    target = 1234
    d = pts[target] - origin
    # reference: brute force in float64, the nearest of the points within the angle
    v = pts.astype(np.float64) - origin
    u = d / np.linalg.norm(d)
    t = v @ u
    within = (t > 0) & (np.linalg.norm(v - t[:, None] * u, axis=1) <= t * np.tan(0.012))
    expected = np.flatnonzero(within)[np.argmin(t[within])]
    assert within[target] and pick_point(pts, origin, d * 3.0) == expected  # direction need not be unit
    # a point put in front on the same ray wins (the visible surface)
    front = origin + 0.5 * d
    pts2 = np.vstack([pts, front[None].astype(np.float32)])
    assert pick_point(pts2, origin, d) == len(pts2) - 1
    # behind the origin, or off the ray: nothing
    assert pick_point(pts, origin, -d) is None
    lone = np.array([[0.0, 0.0, 5.0]], np.float32)
    assert pick_point(lone, np.zeros(3), np.array([0.0, 0.05, 1.0])) is None  # 2.9 degrees off
    assert pick_point(lone, np.zeros(3), np.array([0.0, 0.005, 1.0])) == 0  # 0.3 degrees off
    assert pick_point(lone, np.zeros(3), np.zeros(3)) is None


def _explore(s, bundle, frames: int = 4):
    s.load(bundle, "256x192", "auto", "warp", fill="telea")
    s.set_path("preset", "orbit_right", 0.3, True, frames)
    assert list(s.generate(frames))[-1].done


def _ray_to(s, point: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """A click ray from behind the start camera through ``point`` (as the viewer's camera would cast it)."""
    c = s.model.start_camera.camera_centers[0].double().numpy()
    origin = c - 0.3 * (point - c)
    return origin, point - origin


@pytest.mark.parametrize("kind", ["scene", "upload"])
def test_clicking_a_3d_point_shows_what_its_token_attended_to(manager, tmp_path, kind):
    s = manager.get("a")
    if kind == "scene":
        b = load_sample(SCENE_PREFIX + "tabletop", 256, 192)
    else:
        ex = load_sample(EXAMPLE_PREFIX + "bicycle", 256, 192)
        path = tmp_path / "photo.jpg"
        Image.fromarray(ex.image).save(path)
        b = load_upload(path)
    _explore(s, b)
    last = s.frames[-1]
    rows, cols = last.attention.grid
    q = last.attention.query_points[(rows // 2) * cols + cols // 2].double().numpy()
    assert np.isfinite(q).all()
    origin, direction = _ray_to(s, q)
    r = s.attention_at_point(origin, direction)
    # the picked point is a memory point on the ray, near where the ray was aimed
    picked = r.point
    assert np.linalg.norm(s.model.ggm.point_cloud.double().numpy() - picked, axis=1).min() < 1e-6
    u = direction / np.linalg.norm(direction)
    off = picked - origin
    assert np.linalg.norm(off - (off @ u) * u) / (off @ u) < np.tan(0.012)
    # the answering frame sees it: the point projects back to the pixel whose token was asked
    cam = r.frame.camera
    uv, z = cam.project(torch.as_tensor(picked[None], dtype=cam.dtype))
    assert float(z[0, 0]) > 0 and np.allclose(uv[0, 0].numpy(), r.pixel_xy, atol=1e-6)
    assert r.pixel.token == r.frame.attention.token_at(*r.pixel_xy)
    # the same maps as a pixel click on that frame, and lines from the point in the viewport
    pix = s.attention_at(r.frame.frame_id, *r.pixel_xy)
    assert np.array_equal(pix.heat, r.heat) and [c for _, c in pix.overlays] == [c for _, c in r.overlays]
    assert r.pixel.attended and s.viewport.attention_lines == int(((r.pixel.frames >= 0) & (r.pixel.weights > 0)
                                                                   & np.isfinite(r.pixel.points).all(1)).sum())
    assert s.current_frame_id == r.frame.frame_id and "3D point" in r.message


def test_viewport_clicks_reach_the_page_once_and_misses_say_why(manager):
    s = manager.get("a")
    s.load(load_sample(SCENE_PREFIX + "tabletop", 256, 192), "256x192", "auto", "warp", fill="telea")
    s._on_scene_click(np.zeros(3), np.array([0.0, 0.0, 1.0]))
    serial, r = s.attention_since(0)
    assert serial == 1 and r.frame is None and "generate a path first" in r.message
    assert s.attention_since(serial) is None  # handed over once
    _explore(s, load_sample(SCENE_PREFIX + "tabletop", 256, 192), frames=3)
    c = s.model.start_camera.camera_centers[0].double().numpy()
    s._on_scene_click(c, -s.model.start_camera.c2w[0, :3, 2].double().numpy())  # looking away from the scene
    serial, r = s.attention_since(serial)
    assert serial == 2 and r.frame is None and "hit no point" in r.message
    last = s.frames[-1]
    q = last.attention.query_points[0].double().numpy()
    if not np.isfinite(q).all():
        q = last.attention.query_points[torch.isfinite(last.attention.query_points).all(1)][0].double().numpy()
    s._on_scene_click(*_ray_to(s, q))
    serial, r = s.attention_since(serial)
    assert serial == 3 and r.frame is not None and r.point is not None


@pytest.mark.parametrize("name", [DEFAULT_SAMPLE, EXAMPLE_PREFIX + "photorealistic-outdoor-verdant_landscape-050"])
def test_an_official_path_is_drawn_and_the_cloud_framed_to_fill_the_view(manager, name):
    """Loading an example with a camera file frames the cloud to fill the view, with the photo's field of view, from
    behind every camera of the path: a path that turns around (the landscape's sweeps 100 degrees) grows the cloud
    in front of the viewer."""
    from ui.viewport import VIEWER_ASPECT

    s = manager.get("a")
    b = load_sample(name, 256, 192)
    s.load(b, "256x192", fill="telea")
    s.use_cameras(b.paths[0].cameras)
    cam = s.viewport.server.initial_camera
    eye, look, fov = np.array(cam.position), np.array(cam.look_at), float(cam.fov)
    start_fov = float(s.model.start_camera.fov_y[0])
    assert np.isclose(fov, np.clip(start_fov, np.radians(35.0), np.radians(75.0)))  # the photo's, within bounds
    centres = s.current_path().cameras.camera_centers.double().numpy()
    cloud = s.model.ggm.point_cloud.double().numpy()
    z = (look - eye) / np.linalg.norm(look - eye)
    assert ((centres - eye) @ z > 0).all()  # every path camera in front of the viewer
    x = np.cross(z, np.array(cam.up))
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    rel = cloud - eye
    depth = rel @ z
    u, v = (rel @ x) / depth, (rel @ y) / depth
    half_v = np.tan(fov / 2)
    inside = (depth > 0) & (np.abs(u) <= half_v * VIEWER_ASPECT) & (np.abs(v) <= half_v)
    assert inside.mean() >= 0.9  # the cloud is in view...
    fill = max(np.percentile(np.abs(u[depth > 0]), 95) / (half_v * VIEWER_ASPECT),
               np.percentile(np.abs(v[depth > 0]), 95) / half_v)
    assert fill >= 0.8  # ...and large in it (FRAME_FILL, unless the path's cameras hold the viewer back)


def test_only_the_selected_keyframe_carries_a_gizmo(manager):
    import viser

    s = manager.get("a")
    b = load_sample(DEFAULT_SAMPLE, 256, 192)
    s.load(b, "256x192", fill="telea")
    s.use_cameras(b.paths[0].cameras)
    handles = s.viewport._key_handles
    assert len(handles) == len(s.editor.keyframes) >= 2 and s.editor.selected is None
    assert not any(isinstance(h, viser.TransformControlsHandle) for h in handles)  # an unobstructed view
    s._on_pick(3)  # a click on keyframe 3's frustum
    gizmos = [i for i, h in enumerate(s.viewport._key_handles) if isinstance(h, viser.TransformControlsHandle)]
    assert s.editor.selected == 3 and gizmos == [3]
    before = s.current_path().cameras.camera_centers.clone()
    T = s.editor.keyframes[3].T_world_camera.copy()
    T[0, 3] += 0.5
    s._on_move(3, T)  # dragging that gizmo moves the path
    assert not torch.allclose(s.current_path().cameras.camera_centers, before)
