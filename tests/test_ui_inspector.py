"""The memory inspector of a session (no browser): every frame on the timeline, the memories after it drawn in each
colour mode, the bank and the layers of that frame, and back to the live view."""

from __future__ import annotations

import numpy as np
import pytest

from ui.config import AppConfig
from ui.inspector import COLOUR_MODES, colour_cloud
from ui.samples import SCENE_PREFIX, load_sample
from ui.session_records import BusyError
from ui.sessions import SessionManager


@pytest.fixture
def session(tmp_path):
    m = SessionManager(AppConfig(temp_root=tmp_path / "sessions", max_sessions=1, max_view_points=50_000))
    s = m.get("a")
    s.load(load_sample(SCENE_PREFIX + "room", 128, 96), "256x192", fill="telea")
    s.set_path("preset", "orbit_left", 0.3, False, 5)
    list(s.generate(5))
    s.set_path("preset", "orbit_up", 0.5, False, 3)
    list(s.generate(3))
    yield s
    m.shutdown()


def test_the_timeline_holds_every_frame_and_shows_the_memories_then(session):
    s = session
    frames = s.timeline()
    assert frames == [0, *range(1, 9)]
    assert s.timeline_label(3).startswith("path 1, frame 3") and s.timeline_label(7).startswith("path 2, frame 2")
    first, last = s.inspect(frames[0]), s.inspect(frames[-1])
    assert first.total < last.total == s.model.ggm.num_points
    assert s.viewport.shown_points == last.shown and s.viewport.inspected_frame == frames[-1]
    # the frames up to the chosen one, its own camera marked
    mid = s.inspect(4)
    visible = {int(n[len("/frames/f"):]) for n, h in s.viewport._frustums.items() if n.startswith("/frames/f") and h.visible}
    assert visible == set(range(0, 5))
    assert mid.label.startswith("path 1, frame 4")
    s.live_view()
    assert s.viewport.inspected_frame is None and s.viewport.shown_points == min(s.model.ggm.num_points, 50_000)


def test_each_colour_mode_colours_the_cloud_differently_with_a_legend(session):
    h = session.model.history
    busiest = max(h.entries, key=lambda e: len(e.ggm.added.uids)).frame_id  # a frame that added points
    state = h.state_at(busiest)
    seen = []
    for mode in COLOUR_MODES:
        c = colour_cloud(state, mode, h)
        assert c.legend and c.colors.dtype == np.uint8 and len(c.colors) == len(c.points)
        seen.append(c.colors[: len(state.points)].tobytes())
    assert len(set(seen)) == len(COLOUR_MODES)
    changes = colour_cloud(state, "changes at this frame", h)
    added = np.isin(state.uids.numpy(), state.entry.ggm.added.uids)
    assert added.any() and (changes.colors[: len(state.points)][added] == (40, 200, 60)).all()
    with pytest.raises(ValueError, match="colour mode"):
        colour_cloud(state, "rainbow", h)


def test_the_bank_and_layers_of_a_frame(session):
    s = session
    v = s.inspect(6)
    st = s.model.history.state_at(6)
    assert len(v.bank) >= len(st.keyframe_ids) and v.bank_frames[: len(st.keyframe_ids)] == st.keyframe_ids
    retrieved = [c for _, c in v.bank if "retrieved" in c]
    assert retrieved  # this frame's references are outlined, with their share of the attention
    assert [c.split(":")[0] for _, c in v.layers][:2] == ["GGM render", "holes (white)"]
    assert any(c.startswith("output") for _, c in v.layers) and any("ground truth" in c for _, c in v.layers)
    assert s.pick_keyframe(0) and "/inspect/keyframe" in s.viewport.server.scene._handle_from_node_name


def test_the_inspector_waits_while_a_path_is_made(session):
    s = session
    s.set_path("preset", "orbit_right", 0.3, False, 3)
    stream = s.generate(3)
    next(stream)
    with pytest.raises(BusyError, match="follows the live memory"):
        s.inspect(1)
    list(stream)
    assert s.timeline()[-1] == s.model.frame_counter - 1
