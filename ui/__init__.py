"""The WorldStereo Explorer app: Gradio page, per-session viser viewport, camera-path editor, plots.

Layering: ``ui`` imports ``worldstereo``; ``worldstereo`` never imports ``ui``, gradio or viser.
Modules:

* ``config``: :class:`AppConfig` (host, port, limits) from arguments and environment variables.
* ``sessions``: one :class:`Session` per browser session (model, viewport, temp dir), a bounded
  :class:`SessionManager` with an idle reaper.
* ``viser_proxy``: HTTP + websocket reverse proxy of each session's viser server under ``/viser/<token>/``.
* ``viewport``: what the viser scene shows (point cloud LOD, frustums, path preview, attention lines).
* ``path_editor``: the camera-path editor state and its pure functions (the one path sampler).
* ``samples``, ``plots``, ``attention_view``, ``exports``: inputs, plotly charts, attention overlays, downloads.
* ``page``: the Gradio Blocks; ``server``: the one ASGI app (FastAPI + Gradio + proxy) and ``serve()``.
"""
