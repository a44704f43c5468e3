"""The memory inspector on the page: a timeline under the viewport (every frame of the session, play/pause, the
live view), the cloud's colour modes with a legend, the SSM bank and the layers at the chosen frame, and a cursor
on the memory charts. Handlers are thin: they call the session's :class:`~ui.session_inspector.Inspection`.

The timeline's value is an index into :meth:`Inspection.timeline` (frame ids need not be consecutive); while a
path is made it follows the newest frame unless the user has moved it (the live view stays as it is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from ui import plots
from ui.inspector import COLOUR_MODES

__all__ = ["InspectorUI", "inspector_panels", "inspector_timeline", "timeline_update", "wire_inspector"]

#: seconds between two frames while the timeline plays
PLAY_INTERVAL = 0.8


@dataclass
class InspectorUI:
    """The inspector's components (made where the layout puts them, then wired)."""

    slider: Any
    play: Any
    live: Any
    label: Any
    mode: Any
    legend: Any
    timer: Any
    bank: Any = None
    layers: Any = None


def inspector_timeline() -> InspectorUI:
    """The timeline row and the colour modes (under the viewport)."""
    with gr.Group(elem_id="ws-inspector"):
        with gr.Row(equal_height=True):
            slider = gr.Slider(0, 1, value=0, step=1, label="Timeline: the memories after each frame (arrow keys step)",
                               elem_id="ws-timeline", scale=5)
            play = gr.Button("Play", elem_id="ws-play", scale=0, min_width=90)
            live = gr.Button("Live", elem_id="ws-live", scale=0, min_width=90)
        label = gr.Markdown("", elem_id="ws-timeline-label")
        with gr.Row(equal_height=True):
            mode = gr.Radio(list(COLOUR_MODES), value="RGB", label="Colour the cloud by", elem_id="ws-colour-mode",
                            scale=3)
            legend = gr.HTML("", elem_id="ws-legend")
    timer = gr.Timer(PLAY_INTERVAL, active=False)
    return InspectorUI(slider, play, live, label, mode, legend, timer)


def inspector_panels(ui: InspectorUI) -> InspectorUI:
    """The SSM bank and the layers at the chosen frame (below the charts)."""
    with gr.Accordion("Memory at the chosen frame: the SSM bank and the frame's layers", open=False,
                      elem_id="ws-inspector-panels"):
        gr.Markdown("**The SSM bank**, in bank order: outlined, the keyframes this frame retrieved (with their share of "
                    "its attention); grey, those evicted by then. Click one to mark its camera in 3D.")
        ui.bank = gr.Gallery(label="SSM bank", show_label=False, columns=6, height=300, object_fit="contain",
                             elem_id="ws-bank", allow_preview=False)
        gr.Markdown("**This frame's layers**: the GGM render, its holes, what the SSM's views supplied, where each pixel "
                    "came from, the output, and where the output disagrees with the render on pixels the memory knew.")
        ui.layers = gr.Gallery(label="This frame's layers", show_label=False, columns=7, height=230,
                               object_fit="contain", elem_id="ws-layers", allow_preview=False)
    return ui


def timeline_update(session: Any, follow: bool = True) -> dict[str, Any]:
    """The slider's range after the session changed (a frame, a load); at the newest frame when ``follow``."""
    frames = session.timeline() if session is not None and session.model is not None else []
    last = max(len(frames) - 1, 0)
    update: dict[str, Any] = {"minimum": 0, "maximum": max(last, 1), "interactive": len(frames) > 1}
    if follow:
        update["value"] = last
    return update


def wire_inspector(ui: InspectorUI, session_of: Callable[[Any], Any], stats: Any, fail: Callable[[Exception], str],
                   user_errors: tuple[type[BaseException], ...]) -> None:
    """Connect the inspector's events (``session_of(request)`` finds the caller's session)."""

    def view(index: float, mode: str, request: gr.Request) -> dict[Any, Any]:
        s = session_of(request)
        frames = s.timeline()
        if not frames:
            return {ui.label: "Nothing to inspect yet."}
        i = min(max(int(index), 0), len(frames) - 1)
        s.inspector_follow = i == len(frames) - 1
        v = s.inspect(frames[i], mode)
        return {ui.label: f"**{v.label}**: {v.total:,} points ({v.shown:,} drawn), {len(v.bank_frames)} keyframes",
                ui.legend: v.legend, ui.bank: v.bank, ui.layers: v.layers,
                stats: plots.memory_figure(s.history, cursor=v.frame_id)}

    def on_view(index: float, mode: str, request: gr.Request) -> dict[Any, Any]:
        try:
            return view(index, mode, request)
        except user_errors as exc:
            return {ui.label: fail(exc)}

    def on_play(request: gr.Request) -> dict[Any, Any]:
        s = session_of(request)
        s.inspector_playing = not getattr(s, "inspector_playing", False)
        return {ui.timer: gr.Timer(active=s.inspector_playing), ui.play: "Pause" if s.inspector_playing else "Play"}

    def on_tick(index: float, mode: str, request: gr.Request) -> dict[Any, Any]:
        s = session_of(request)
        frames = s.timeline()
        nxt = int(index) + 1
        if not getattr(s, "inspector_playing", False) or nxt >= len(frames):
            s.inspector_playing = False
            return {ui.timer: gr.Timer(active=False), ui.play: "Play"}
        try:
            return {ui.slider: nxt, **view(nxt, mode, request)}
        except user_errors as exc:
            s.inspector_playing = False
            return {ui.label: fail(exc), ui.timer: gr.Timer(active=False), ui.play: "Play"}

    def on_live(request: gr.Request) -> dict[Any, Any]:
        try:
            s = session_of(request)
            s.live_view()
            s.inspector_follow = True
            return {ui.slider: gr.update(**timeline_update(s)), ui.label: "The live memories.", ui.legend: "",
                    stats: plots.memory_figure(s.history)}
        except user_errors as exc:
            return {ui.label: fail(exc)}

    def on_pick(evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
        try:
            name = session_of(request).pick_keyframe(int(evt.index))
            return {ui.label: f"Marked in 3D (magenta): the camera of {name}."}
        except user_errors as exc:
            return {ui.label: fail(exc)}

    outputs = [ui.label, ui.legend, ui.bank, ui.layers, stats]
    ui.slider.input(on_view, [ui.slider, ui.mode], outputs, api_name="inspect", trigger_mode="always_last",
                    show_progress="hidden")
    ui.mode.input(on_view, [ui.slider, ui.mode], outputs, api_name=False, show_progress="hidden")
    ui.play.click(on_play, None, [ui.timer, ui.play], api_name=False, queue=False)
    ui.timer.tick(on_tick, [ui.slider, ui.mode], [ui.slider, *outputs, ui.timer, ui.play], api_name=False,
                  show_progress="hidden", trigger_mode="always_last")
    ui.live.click(on_live, None, [ui.slider, ui.label, ui.legend, stats], api_name=False)
    ui.bank.select(on_pick, None, [ui.label], api_name=False)
