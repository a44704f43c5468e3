"""A snapshot written before the layering change (``tests/data/snapshot_v1``) loads and continues unchanged.

The files were written by commit 334fc5a (before the model, context, pipeline and backends were
re-layered): the room scene at 64x48, ``warp`` + Telea, a 4-frame ``orbit_left``, saved; then that
snapshot was loaded and an ``eloop`` of 3 frames generated, whose last frame is
``next_eloop_frame2.png``. Loading today must restore the same state, and the same continuation
must draw the same frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from worldstereo.model import WorldStereo

SNAPSHOT = Path(__file__).resolve().parent / "data" / "snapshot_v1"


def test_old_snapshot_restores_its_recorded_state():
    meta = json.loads((SNAPSHOT / "state.json").read_text())
    model = WorldStereo.load(SNAPSHOT)
    assert model.config.width == 64 and model.config.height == 48 and model.config.fill == "telea"
    assert model.frame_counter == meta["frame_counter"] == 5
    assert model.path_counter == meta["path_counter"] == 1
    assert [k.frame_id for k in model.keyframes] == [k["frame_id"] for k in meta["keyframes"]]
    assert len(model.paths) == meta["num_paths"] == 1 and len(model.paths[0]) == 4
    assert model.scene_depth == meta["scene_depth"] and model.merge_threshold == meta["merge_threshold"]
    # the start keyframe is the start view: its pixels lift to points that project back onto themselves
    start = model.keyframes[0]
    assert start.frame_id == 0 and torch.equal(start.image, model.start_image)
    pts = start.camera.unproject(start.depth.unsqueeze(0))[0]  # (H, W, 3)
    uv, z = start.camera.project(pts.reshape(-1, 3))
    ys, xs = torch.meshgrid(torch.arange(48) + 0.5, torch.arange(64) + 0.5, indexing="ij")
    ok = start.depth[0].reshape(-1) > 0
    torch.testing.assert_close(uv[0][ok], torch.stack([xs, ys], -1).reshape(-1, 2)[ok], atol=1e-3, rtol=0)
    # every GGM point is finite and the memory holds what was saved
    assert model.ggm.num_points == 4094 and bool(torch.isfinite(model.ggm.point_cloud).all())


def test_old_snapshot_continues_as_the_code_before_drew_it():
    model = WorldStereo.load(SNAPSHOT)
    steps = list(model.generate("eloop", num_frames=3))
    assert [s.frame_id for s in steps] == [5, 6, 7]
    got = steps[-1].image_uint8().astype(np.int16)
    before = np.asarray(Image.open(SNAPSHOT / "next_eloop_frame2.png")).astype(np.int16)
    assert got.shape == before.shape == (48, 64, 3)
    assert int(np.abs(got - before).max()) <= 1  # the same frame (rounding aside)
    assert model.ggm.num_points == 4363  # as many points as the code before held after the same path
