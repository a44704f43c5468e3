"""The Gradio page: inputs, path controls, the embedded viser viewport, the generation stream, plots,
attention maps and downloads. Handlers are thin: they find the caller's :class:`~ui.explorer.Session` by
gradio's session hash and call its methods; every bad input becomes a warning and a status line.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any

import gradio as gr

from ui import plots
from ui.config import WORKING_SIZES, AppConfig
from ui.engine_status import NOT_STARTED
from ui.explorer import (
    DEPTH_CHOICES,
    DISPLAY_MODES,
    GENERATOR_CHOICES,
    BusyError,
    Session,
    StreamUpdate,
    default_generator,
)
from ui.page_inspector import inspector_panels, inspector_timeline, timeline_update, wire_inspector
from ui.path_editor import read_path_file
from ui.samples import (
    DEFAULT_SAMPLE,
    display_name,
    list_samples,
    load_sample,
    load_upload,
    sample_caption,
    sample_thumbnail,
)
from ui.sessions import SessionLimitError, SessionManager
from worldstereo.backends.fill import FILL_CHOICES
from worldstereo.hub import WeightsUnavailableError
from worldstereo.trajectory import list_presets

USER_ERRORS = (ValueError, BusyError, SessionLimitError, KeyError, WeightsUnavailableError)

INTRO = """## WorldStereo Explorer
An example is loaded with its camera path drawn: press **Generate** and watch frames being generated along it while
both memories grow, the global point cloud (GGM) and the stored views the spatial-stereo memory (SSM) attends to.
Click a point of the cloud to see what it attended to. Pick another example below (Room 360* is a panorama) or upload
a photo or a 360° panorama (2:1)."""

ABOUT = """On a CPU the generator is **warp**, a training-free geometric renderer and filler (GGM render + SSM attention +
LaMa inpainting), not a learned video model; on a CUDA GPU it is **vace** (Wan2.1-VACE, a video diffusion model fed
the GGM render, its holes and the SSM's reference views); **oracle** renders the ground truth of a procedural scene.
The line at the top always says which depth, generator, fill and device run, and why anything fell back."""

VIEWPORT_HEIGHT = 560
#: how long Cancel waits for the frame in progress to finish, so that it answers with the final status
CANCEL_WAIT_S = 20.0

#: the engine line stays in view while the page scrolls (what is scrolled to stops below it); the viewport takes the
#: column's width; the frames strip wraps inside its panel
PAGE_CSS = """
.gradio-container { overflow-x: clip !important; overflow-y: visible !important; } /* 'hidden' would stop sticky */
html { scroll-padding-top: 96px; }
#ws-engine { position: sticky; top: 0; z-index: 20; padding: 6px 10px; border-radius: 8px;
             background: var(--block-background-fill); border: 1px solid var(--border-color-primary); }
#ws-engine p { margin: 0; font-size: 0.92em; }
#ws-examples .thumbnail-item { cursor: pointer; }
#ws-attention, #ws-downloads { scroll-margin-top: 96px; }
"""

#: scrolls the attention panel into view (after a pixel click opened it; it stops below the engine line)
SCROLL_TO_ATTENTION = ("() => { const go = () => document.querySelector('#ws-attention')?.scrollIntoView({block: 'start'}); "
                       "go(); setTimeout(go, 400); setTimeout(go, 1200); }")  # again once its images have laid out

#: what the attention panels show before a query (and again when the scene changes)
ATTENTION_HINT = "Click a point of the cloud in the 3D view, or a pixel of a generated frame."


_SERVER_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[/\\][^/\\\s'\"]+)+[/\\]([^/\\\s'\"]+)")


def user_message(exc: BaseException) -> str:
    """The message of ``exc`` for the page: server paths shortened to their file names."""
    return _SERVER_PATH.sub(r"\1", str(exc))


def viewport_html(token: str) -> str:
    """The iframe of the session's viser viewport (a relative URL: works under any prefix and behind HTTPS)."""
    t = html.escape(token, quote=True)
    return (f'<iframe id="ws-viser" src="viser/{t}/" title="3D viewport" '
            f'style="width:100%;height:min({VIEWPORT_HEIGHT}px,72vh);border:0;border-radius:8px" allow="fullscreen"></iframe>')


def example_gallery(folder) -> tuple[list[str], list[tuple[str, str]]]:
    """(sample names, gallery items ``(thumbnail path, caption)``): real photos first, then procedural scenes."""
    names = list_samples()
    return names, [(str(sample_thumbnail(n, folder)), sample_caption(n)) for n in names]


def build_page(manager: SessionManager, config: AppConfig) -> gr.Blocks:
    """The page's Blocks (queue and mounting are done by ``ui.server``)."""

    def session(request: gr.Request) -> Session:
        return manager.get(request.session_hash if request is not None else None)

    def small_upload(path: str | None, what: str) -> str | None:
        """``path`` when it is within the media upload limit (snapshots may be larger: the page's limit is theirs)."""
        import os

        if path and os.path.getsize(path) > config.max_upload_mb * 2**20:
            raise ValueError(f"the {what} is {os.path.getsize(path) / 2**20:.1f} MB; uploads are limited to "
                             f"{config.max_upload_mb} MB (memory snapshots to {config.snapshot_upload_mb} MB)")
        return path

    def fail(exc: Exception) -> str:
        text = user_message(exc)
        gr.Warning(text)
        return f"⚠️ {text}"

    sample_names, gallery_items = example_gallery(config.temp_root / "thumbnails")

    with gr.Blocks(title="WorldStereo Explorer", analytics_enabled=False, fill_width=True) as demo:
        engine = gr.Markdown(NOT_STARTED, elem_id="ws-engine")
        gr.Markdown(INTRO)
        with gr.Row():
            with gr.Column(scale=1, min_width=380):
                examples = gr.Gallery(gallery_items, label="Examples: click to load (* = synthetic, with ground truth)",
                                      columns=3, height=330, allow_preview=False, object_fit="cover",
                                      elem_id="ws-examples")
                sample = gr.Dropdown(list_samples(), value=DEFAULT_SAMPLE, label="Sample", elem_id="ws-sample",
                                     visible=False)
                load_btn = gr.Button("Load sample", elem_id="ws-load", visible=False)
                status = gr.Markdown("Loading the first example...", elem_id="ws-status")
                with gr.Row():
                    gen_btn = gr.Button("Generate", variant="primary", elem_id="ws-generate")
                    cancel_btn = gr.Button("Cancel", variant="stop", elem_id="ws-cancel")
                with gr.Row():
                    undo_btn = gr.Button("Undo last path", elem_id="ws-undo")
                    reset_btn = gr.Button("Reset", elem_id="ws-reset")
                    world_btn = gr.Button("Build world", elem_id="ws-world")
                with gr.Accordion("Camera path", open=True):
                    mode = gr.Radio(["preset", "keyframes"], value="preset", label="Path source",
                                    info="keyframes: an example's official path, an imported file, or your own "
                                         "(viewport panel 'Camera path')", elem_id="ws-mode")
                    preset = gr.Dropdown(list_presets(), value="orbit_right", label="Preset", elem_id="ws-preset")
                    amount = gr.Slider(0.05, 2.0, value=0.25, step=0.05, label="Motion amount (x reference move)",
                                       elem_id="ws-amount")
                    guard = gr.Checkbox(True, label="Collision guard (shorten moves through the geometry)")
                    num_frames = gr.Slider(2, config.max_frames, value=21, step=1, label="Frames", elem_id="ws-frames")
                    preview_btn = gr.Button("Preview path in viewport")
                    with gr.Row():
                        official = gr.Dropdown([], label="Official path of the example", interactive=True)
                        official_btn = gr.Button("Use")
                    path_file = gr.File(label="Import camera.json / camera_path.json", type="filepath")
                with gr.Accordion("Upload your own", open=False):
                    up_image = gr.File(label="Image (PNG, JPEG, WebP...)", type="filepath")
                    up_depth = gr.File(label="Depth map (optional: 16-bit PNG in mm, .npy or .exr)", type="filepath")
                    up_as_photo = gr.Checkbox(False, label="A 2:1 image loads as a 360° panorama (its depth map: the "
                                                           "range per pixel); tick to load it as an ordinary photo")
                    up_btn = gr.Button("Load upload", variant="primary")
                    up_snapshot = gr.File(label=f"Or continue from a memory snapshot (.zip from Downloads, up to "
                                                f"{config.snapshot_upload_mb} MB)", type="filepath", file_types=[".zip"],
                                          elem_id="ws-snapshot")
                with gr.Accordion("Settings", open=False):
                    size = gr.Dropdown(list(WORKING_SIZES), value=config.default_size, label="Working size")
                    depth_backend = gr.Dropdown(list(DEPTH_CHOICES), value="auto", label="Depth")
                    generator = gr.Dropdown(list(GENERATOR_CHOICES), value=default_generator(), label="Generator",
                                            info="vace: Wan2.1-VACE on a CUDA GPU; warp: training-free, CPU")
                    fill = gr.Dropdown(list(FILL_CHOICES), value="auto", label="Fill",
                                       info="auto: LaMa when its weights can be had, else Telea")
                    gr.Markdown(ABOUT)
            with gr.Column(scale=3):
                viewport = gr.HTML("<p>Starting the viewport...</p>", elem_id="ws-viewport")
                with gr.Row():
                    progress = gr.Markdown("", elem_id="ws-progress")
                    frames_3d = gr.Checkbox(True, label="Frames in 3D (the generated frames' and the path's frustums)",
                                            elem_id="ws-frames-3d", scale=0, min_width=260)
                    display = gr.Radio(list(DISPLAY_MODES), value="Points", label="Memory drawn as", show_label=False,
                                       container=False, elem_id="ws-display", scale=0, min_width=170)
                insp = inspector_timeline()
                with gr.Row():
                    current = gr.Image(label="Frame (click a pixel for its attention)", interactive=False,
                                       elem_id="ws-frame", height=300)
                    gallery = gr.Gallery(label="Generated frames", columns=3, height=300, object_fit="contain",
                                         elem_id="ws-gallery")
                stats = gr.Plot(label="Memory statistics", elem_id="ws-stats")
                inspector_panels(insp)
        shown = gr.Number(value=-1, visible=False, precision=0)
        att_serial = gr.State(0)
        att_timer = gr.Timer(1.0)
        with gr.Accordion("Attention maps", open=False, elem_id="ws-attention") as att_acc:
            att_msg = gr.Markdown(ATTENTION_HINT, elem_id="ws-att-msg")
            with gr.Row():
                att_query = gr.Image(label="Query token", interactive=False, height=260, elem_id="ws-att-query")
                att_overlays = gr.Gallery(label="Attended keyframes, whole (shaded: the patches holding half of the frame's "
                                                "attention on it; boxes: this token's)",
                                          elem_id="ws-att-overlays", columns=3, height=260, object_fit="contain")
            att_heat = gr.Plot(label="Attention over the memory bank, by keyframe", elem_id="ws-att-heat")
            truth_box = gr.Checkbox(False, label="Show ground truth and error map (procedural scenes)")
            with gr.Row():
                truth_img = gr.Image(label="Ground truth", interactive=False, height=260)
                error_img = gr.Image(label="Error |generated - truth|", interactive=False, height=260)
        with gr.Accordion("Downloads", open=False, elem_id="ws-downloads"):
            export_btn = gr.Button("Prepare downloads", elem_id="ws-export")
            files = gr.File(label="Video, point cloud (PLY, GLB), cameras, memory snapshot", file_count="multiple",
                            elem_id="ws-files")

        # ------------------------------------------------------------------ handlers
        def on_load(request: gr.Request) -> dict[Any, Any]:
            try:
                s = session(request)
                s.viewport  # noqa: B018 - starts the session's viser server
                return {viewport: viewport_html(s.token)}
            except USER_ERRORS as exc:
                return {viewport: f"<p>{html.escape(str(exc))}</p>", status: fail(exc)}

        def on_unload(request: gr.Request) -> None:
            manager.close(request.session_hash)

        def after_start(s: Session, summary) -> dict[Any, Any]:
            """Outputs of a (re)start. An example starts on its first official path, drawn as keyframes."""
            paths = summary.official_paths
            details = summary.message
            message = f"Loaded **{html.escape(display_name(summary.label))}**: {summary.num_points:,} points."
            if paths and s.bundle is not None and s.bundle.paths:
                note = s.use_cameras(s.bundle.paths[0].cameras)
                message += f" Its official path '{html.escape(paths[0])}' is drawn ({s.num_frames} frames): press **Generate**."
                details += f" {note}" if note else ""
            message += f"\n<details><summary>Details</summary>\n\n{details}\n\n</details>"
            presets = s.editor.mode == "preset"
            return {
                status: message, viewport: viewport_html(s.token),
                official: gr.update(choices=paths, value=paths[0] if paths else None),
                mode: s.editor.mode, preset: gr.update(value=s.editor.preset, visible=presets),
                amount: gr.update(value=s.editor.amount, visible=presets), num_frames: s.num_frames,
                gallery: [], current: None, progress: "", stats: None, shown: -1,
                engine: s.engine.markdown() if s.engine is not None else NOT_STARTED,
                frames_3d: s.viewport.frames_visible,
                insp.slider: gr.update(**timeline_update(s)), insp.label: "", insp.legend: "", insp.bank: [],
                insp.layers: [],
                **cleared_attention(),
            }

        def cleared_attention() -> dict[Any, Any]:
            """The attention panels of a new scene: nothing asked yet."""
            return {att_msg: ATTENTION_HINT, att_query: None, att_overlays: [], att_heat: None, truth_img: None,
                    error_img: None}

        def download_progress(progress: gr.Progress):
            def report(done: int, total: int | None) -> None:
                if total:
                    progress(done / total, desc=f"Downloading depth weights (first use): {done / 2**20:.0f} of "
                                                f"{total / 2**20:.0f} MiB")
            return report

        def on_load_sample(name: str, size_v: str, depth_v: str, gen_v: str, fill_v: str = "auto",
                           request: gr.Request = None,
                           progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008 - gradio's idiom
            try:
                s = session(request)
                w, h = WORKING_SIZES.get(size_v, WORKING_SIZES[config.default_size])
                return after_start(s, s.load(load_sample(name, w, h), size_v, depth_v, gen_v, fill=fill_v,
                                             progress=download_progress(progress)))
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def on_default(size_v: str, depth_v: str, gen_v: str, fill_v: str = "auto", request: gr.Request = None,
                       progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008
            """A new page opens on the default example, already started (unless this session has one)."""
            s = manager.peek(request.session_hash if request is not None else None)
            if s is not None and s.model is not None:
                return {status: gr.skip()}  # nothing changes
            return on_load_sample(DEFAULT_SAMPLE, size_v, depth_v, gen_v, fill_v, request, progress)

        def on_example(size_v: str, depth_v: str, gen_v: str, fill_v: str, evt: gr.SelectData,
                       request: gr.Request = None, progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008
            index = evt.index if isinstance(evt.index, int) else None
            if index is None or not 0 <= index < len(sample_names):
                return {status: gr.skip()}  # nothing changes
            return on_load_sample(sample_names[index], size_v, depth_v, gen_v, fill_v, request, progress)

        def on_upload(image_file: str | None, depth_file: str | None, size_v: str, depth_v: str, gen_v: str,
                      fill_v: str = "auto", as_photo: bool = False, request: gr.Request = None,
                      progress: gr.Progress = gr.Progress()) -> dict[Any, Any]:  # noqa: B008
            try:
                if not image_file:
                    raise ValueError("choose an image file to upload")
                s = session(request)
                bundle = load_upload(small_upload(image_file, "image"), small_upload(depth_file, "depth map"),
                                     as_photo=bool(as_photo))
                return after_start(s, s.load(bundle, size_v, depth_v, gen_v, fill=fill_v,
                                             progress=download_progress(progress)))
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def on_snapshot(archive: str | None, request: gr.Request = None) -> dict[Any, Any]:
            if not archive:
                return {status: gr.skip()}  # nothing changes
            try:
                s = session(request)
                return after_start(s, s.load_snapshot(archive))
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def on_path(mode_v: str, preset_v: str, amount_v: float, guard_v: bool, n: int, request: gr.Request) -> str:
            try:
                msg = session(request).set_path(mode_v, preset_v, amount_v, guard_v, int(n))
                return msg or f"Path: {preset_v if mode_v == 'preset' else 'keyframes'}, {int(n)} frames (previewed in blue)."
            except USER_ERRORS as exc:
                return fail(exc)

        def on_official(name: str | None, request: gr.Request) -> dict[Any, Any]:
            try:
                s = session(request)
                if s.bundle is None or not name:
                    raise ValueError("load an official example first")
                cams = next(p.cameras for p in s.bundle.paths if p.name == name)
                msg = s.use_cameras(cams)
                return {status: msg or f"Official path '{name}' loaded as keyframes.", mode: "keyframes",
                        num_frames: s.num_frames}
            except (*USER_ERRORS, StopIteration) as exc:
                return {status: fail(ValueError(f"no official path {name!r}") if isinstance(exc, StopIteration) else exc)}

        def on_import(path: str | None, request: gr.Request) -> dict[Any, Any]:
            if not path:
                return {status: gr.skip()}  # nothing changes
            try:
                s = session(request)
                msg = s.use_cameras(read_path_file(small_upload(path, "camera file")))
                return {status: msg or "Camera path imported as keyframes.", mode: "keyframes", num_frames: s.num_frames}
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def stream_outputs(u: StreamUpdate, s: Session) -> dict[Any, Any]:
            out: dict[Any, Any] = {
                progress: f"**{u.status}**", gallery: u.frame_files, stats: plots.memory_figure(u.history),
                insp.slider: gr.update(**timeline_update(s, follow=s.inspector_follow)),
            }
            if u.frame is not None:
                out[current] = str(u.frame.file)
                out[shown] = u.frame.frame_id
            if u.done:
                out[status] = u.status
            return out

        def on_generate(mode_v: str, preset_v: str, amount_v: float, guard_v: bool, n: int,
                        request: gr.Request) -> Iterator[dict[Any, Any]]:
            try:
                s = session(request)
                s.set_path(mode_v, preset_v, amount_v, guard_v, int(n))
                for u in s.generate(int(n)):
                    yield stream_outputs(u, s)
            except USER_ERRORS as exc:
                yield {status: fail(exc)}

        def on_world(n: int, request: gr.Request) -> Iterator[dict[Any, Any]]:
            """Build world: the input's default plan (a panorama's walks, an example's official paths, a photo's
            moves) from the current memories; the dataset zip lands in Downloads."""
            try:
                s = session(request)
                for line, archive in s.build_world(int(n)):
                    if archive is None:
                        yield {progress: f"**{line}**"}
                    else:
                        yield {progress: "", status: line, files: s.downloads(), insp.slider: gr.update(**timeline_update(s)),
                               stats: plots.memory_figure(s.history)}
            except USER_ERRORS as exc:
                yield {status: fail(exc)}

        def on_cancel(request: gr.Request) -> str:
            s = manager.peek(request.session_hash)
            if s is not None and s.busy:
                final = s.cancel_and_wait(CANCEL_WAIT_S)
                return f"**{final}**" if final is not None else "Cancelling after the current frame..."
            return "Nothing is running."

        def on_undo(request: gr.Request) -> dict[Any, Any]:
            try:
                s = session(request)
                msg = s.undo()
                files_ = [str(r.file) for r in s.frames]
                return {status: msg, gallery: files_, stats: plots.memory_figure(s.history),
                        current: files_[-1] if files_ else None, progress: "", insp.slider: gr.update(**timeline_update(s))}
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def on_reset(size_v: str, depth_v: str, gen_v: str, fill_v: str = "auto", request: gr.Request = None) -> dict[Any, Any]:
            try:
                s = session(request)
                return after_start(s, s.reset(size_v, depth_v, gen_v, fill_v))
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def on_export(request: gr.Request) -> dict[Any, Any]:
            try:
                s = session(request)
                s.export()
                return {files: s.downloads(), status: "Downloads ready."}
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def attention_outputs(s: Session, frame_id: int, x: float, y: float, truth: bool, result=None) -> dict[Any, Any]:
            r = result if result is not None else s.attention_at(frame_id, x, y)
            out: dict[Any, Any] = {
                att_msg: r.message, att_query: r.marked, att_overlays: r.overlays,
                att_heat: plots.attention_heatmap(r.heat_frames, r.heat, r.grid, f"frame {r.frame.frame_id}, pixel ({x:.0f}, {y:.0f})")
                if r.heat.size else None,
            }
            if truth:
                gt, err, psnr = s.truth_of(r.frame.frame_id)
                out.update({truth_img: gt, error_img: err})
                out[att_msg] = r.message + f" Frame PSNR against the ground truth: {psnr:.2f} dB."
            return out

        def on_select_pixel(frame_id: float, truth: bool, evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            """A click on a pixel of the frame: its token's attention, in the panel (opened; the page scrolls to it)."""
            try:
                x, y = evt.index
                out = attention_outputs(session(request), int(frame_id), float(x), float(y), truth)
            except USER_ERRORS as exc:
                out = {att_msg: fail(exc)}
            return {**out, att_acc: gr.Accordion(open=True)}

        def on_display(mode: str, request: gr.Request) -> dict[Any, Any]:
            try:
                return {progress: session(request).set_display(mode)}
            except USER_ERRORS as exc:
                return {status: fail(exc)}

        def on_frames_3d(visible: bool, request: gr.Request) -> None:
            s = manager.peek(request.session_hash if request is not None else None)
            if s is not None:
                s.viewport.set_frames_visible(bool(visible))

        def on_mode(mode_v: str) -> dict[Any, Any]:
            """The preset's boxes show only while the path source is a preset."""
            return {preset: gr.update(visible=mode_v == "preset"), amount: gr.update(visible=mode_v == "preset")}

        def on_attention_api(frame_id: float, x: float, y: float, truth: bool, request: gr.Request) -> dict[Any, Any]:
            try:
                return attention_outputs(session(request), int(frame_id), float(x), float(y), truth)
            except USER_ERRORS as exc:
                return {att_msg: fail(exc)}

        def on_gallery_select(evt: gr.SelectData, request: gr.Request) -> dict[Any, Any]:
            s = manager.peek(request.session_hash)
            if s is None or not s.frames or evt.index is None or not 0 <= int(evt.index) < len(s.frames):
                return {current: gr.skip()}  # nothing changes
            rec = s.show_frame(s.frames[int(evt.index)].frame_id)
            return {current: str(rec.file), shown: rec.frame_id}

        def on_attention_poll(serial: int, truth: bool, request: gr.Request) -> dict[Any, Any]:
            """The result of a click in the 3D view (the viewport's callback stores it; the page polls)."""
            s = manager.peek(request.session_hash if request is not None else None)
            new = s.attention_since(serial) if s is not None else None
            if new is None:
                return {att_serial: gr.skip()}  # nothing changes
            serial, r = new
            if r.frame is None:  # the click found nothing to ask: say why, keep the last maps
                return {att_serial: serial, att_msg: f"⚠️ {r.message}", att_acc: gr.Accordion(open=True)}
            out = {att_serial: serial, att_acc: gr.Accordion(open=True), current: str(r.frame.file),
                   shown: r.frame.frame_id}
            try:
                out.update(attention_outputs(s, r.frame.frame_id, *r.pixel_xy, truth, result=r))
            except USER_ERRORS as exc:
                out[att_msg] = fail(exc)
            return out

        # ------------------------------------------------------------------ wiring
        att_outputs = [att_msg, att_query, att_overlays, att_heat, truth_img, error_img]
        start_outputs = [status, viewport, official, mode, preset, amount, gallery, current, progress, stats, shown,
                         engine, num_frames, frames_3d, *att_outputs, insp.slider, insp.label, insp.legend, insp.bank,
                         insp.layers]
        settings = [size, depth_backend, generator, fill]
        demo.load(on_load, outputs=[viewport, status], api_name=False).then(
            on_default, settings, start_outputs, api_name=False)
        demo.unload(on_unload)
        examples.select(on_example, settings, start_outputs, api_name=False)
        load_btn.click(on_load_sample, [sample, size, depth_backend, generator, fill], start_outputs, api_name="load_sample")
        up_snapshot.upload(on_snapshot, [up_snapshot], start_outputs, api_name="load_snapshot")
        up_btn.click(on_upload, [up_image, up_depth, size, depth_backend, generator, fill, up_as_photo], start_outputs,
                     api_name="load_upload")
        path_inputs = [mode, preset, amount, guard, num_frames]
        preview_btn.click(on_path, path_inputs, status, api_name="set_path")
        official_btn.click(on_official, official, [status, mode, num_frames], api_name="use_official_path")
        path_file.upload(on_import, path_file, [status, mode, num_frames], api_name="import_path")
        gen_event = gen_btn.click(on_generate, path_inputs, [progress, gallery, stats, current, shown, status, insp.slider],
                                  api_name="generate", concurrency_id="generate")
        # outside the queue: a queued cancel waited behind the generation it was to stop
        cancel_btn.click(on_cancel, None, progress, api_name="cancel", queue=False)
        undo_btn.click(on_undo, None, [status, gallery, stats, current, progress, insp.slider], api_name="undo")
        reset_btn.click(on_reset, [size, depth_backend, generator, fill], start_outputs, api_name="reset")
        world_btn.click(on_world, [num_frames], [progress, status, files, insp.slider, stats], api_name="build_world")
        wire_inspector(insp, session, stats, fail, USER_ERRORS)
        export_btn.click(on_export, None, [files, status], api_name="export")
        att_timer.tick(on_attention_poll, [att_serial, truth_box], [*att_outputs, att_serial, att_acc, current, shown],
                       api_name=False, show_progress="hidden", queue=False, trigger_mode="always_last")
        current.select(on_select_pixel, [shown, truth_box], [*att_outputs, att_acc], api_name=False).then(
            fn=None, inputs=None, outputs=None, js=SCROLL_TO_ATTENTION, api_name=False)  # opened, and scrolled to
        mode.change(on_mode, mode, [preset, amount], api_name=False, queue=False)
        frames_3d.input(on_frames_3d, frames_3d, None, api_name=False, queue=False)
        display.input(on_display, display, [progress, status], api_name="display", trigger_mode="always_last")
        gallery.select(on_gallery_select, None, [current, shown], api_name=False)
        att_api = gr.Button(visible=False)
        att_x = gr.Number(visible=False)
        att_y = gr.Number(visible=False)
        att_api.click(on_attention_api, [shown, att_x, att_y, truth_box], att_outputs, api_name="attention")
        del gen_event
    return demo


