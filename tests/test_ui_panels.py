"""The page's panels as plain data: readable memory charts, attention overlays that show where a frame looked, the
upload limit that takes back every snapshot the app writes, and the viewport's framing."""

from __future__ import annotations

import math

import numpy as np
import torch

from ui.attention_view import SHADE_ALPHA, keyframe_overlay, top_patches
from ui.config import WORKING_SIZES, AppConfig
from ui.plots import StatsPoint, memory_figure
from ui.viewport import framing_distance, point_spacing
from worldstereo.camera import CameraParameters
from worldstereo.keyframes import MemoryKeyframe
from worldstereo.pipeline import MemoryStats


def _stats(added: int, merged: int) -> MemoryStats:
    return MemoryStats(points_total=816_595, points_added=added, points_merged=merged, points_evicted=0,
                       ssm_occupancy=0.3, ssm_entries=100, ssm_added=768, ssm_evicted=0, keyframes=3)


def test_memory_chart_reads_at_any_ratio_with_whole_numbers():
    fig = memory_figure([StatsPoint(i, 0, _stats(200, 90_000)) for i in range(5)])
    layout = fig.layout
    per_frame = [a for a in (layout.yaxis, layout.yaxis3) if a is not None]
    assert all(a.type == "log" for a in per_frame)  # 200 added beside 90,000 merged: both visible
    assert layout.yaxis2.tickformat == ",d" and layout.yaxis.tickformat == ",d"  # not "816.5955k"
    assert layout.xaxis2.tickformat == "d"


def test_top_patches_hold_the_share_asked_and_show_the_spread():
    focused = np.zeros((6, 8))
    focused[2, 3], focused[2, 4] = 5.0, 1.0
    assert top_patches(focused).sum() == 1  # one patch holds half of it
    uniform = np.ones((6, 8))
    shaded = top_patches(uniform)
    assert shaded.sum() == 24  # spread evenly: half of the patches
    mixed = np.ones((6, 8))
    mixed[0, 0] = 47.0  # one patch holds half of the mass
    assert top_patches(mixed).sum() == 1
    assert not top_patches(np.zeros((6, 8))).any()


def test_the_overlay_keeps_the_keyframe_whole_and_shades_only_where_the_frame_looked():
    h, w, p = 48, 64, 16
    rng = np.random.default_rng(0)
    image = torch.from_numpy(rng.random((3, h, w)).astype(np.float32))
    cam = CameraParameters.from_fov(1.0, w, h)
    kf = MemoryKeyframe(3, 0, image, torch.ones(1, h, w), torch.ones(1, h, w), cam)
    heat = torch.zeros(h // p, w // p)
    heat[1, 2] = 1.0
    out = keyframe_overlay(kf, heat, None)
    plain = (image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert out.shape == plain.shape  # the whole keyframe, at its size
    changed = np.any(out != plain, axis=2)
    assert changed[p : 2 * p, 2 * p : 3 * p].all() and not changed[:, : 2 * p].any()  # the one patch it looked at
    # elsewhere the keyframe keeps its full contrast
    assert np.array_equal(out[: p], plain[: p])
    assert 0 < SHADE_ALPHA < 0.5


def test_the_upload_limit_takes_back_the_largest_snapshot_the_app_writes():
    from worldstereo.config import WorldStereoConfig
    from worldstereo.snapshot import snapshot_bytes_bound

    cfg = AppConfig()
    w, h = max(WORKING_SIZES.values())
    big = WorldStereoConfig(width=w, height=h, memory_size=45 * (w // 16) * (h // 16))
    assert cfg.snapshot_upload_mb * 2**20 >= snapshot_bytes_bound(big, 45, path_frames=cfg.max_frames)
    assert cfg.snapshot_upload_mb >= cfg.max_upload_mb


def test_framing_fills_the_view_with_the_cloud():
    rng = np.random.default_rng(1)
    pts = rng.uniform(-1, 1, (5000, 3)) * np.array([2.0, 1.0, 0.2]) + np.array([0.0, 0.0, 5.0])
    direction, up = np.array([0.0, 0.0, -1.0]), np.array([0.0, -1.0, 0.0])
    fov, aspect = math.radians(50), 1.7
    d = framing_distance(pts, pts.mean(0), direction, up, fov, aspect, fill=0.9)
    eye = pts.mean(0) + direction * d
    rel = pts - eye
    x, y, z = rel[:, 0], -rel[:, 1], rel[:, 2]
    half_v = math.tan(fov / 2)
    fx = np.percentile(np.abs(x / z), 95) / (half_v * aspect)
    fy = np.percentile(np.abs(y / z), 95) / half_v
    assert 0.85 <= max(fx, fy) <= 0.901  # the view is filled in one direction, to the margin asked


def test_point_spacing_is_the_nearest_neighbour_distance():
    g = np.stack(np.meshgrid(np.arange(30), np.arange(30), indexing="ij"), -1).reshape(-1, 2) * 0.05
    pts = np.concatenate([g, np.zeros((len(g), 1))], axis=1)
    assert abs(point_spacing(pts) - 0.05) < 1e-9
