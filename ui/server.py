"""The one ASGI app: FastAPI with the viser proxy routes and the Gradio page mounted at ``/``; ``serve()``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import gradio as gr
import uvicorn
from fastapi import FastAPI

from ui.config import AppConfig
from ui.page import PAGE_CSS, build_page
from ui.sessions import SessionManager
from ui.viser_proxy import add_viser_proxy
from worldstereo.runtime import keep_freed_memory, warm_up


@dataclass
class ExplorerApp:
    """The composed app and what it is made of."""

    app: FastAPI
    demo: gr.Blocks
    sessions: SessionManager
    config: AppConfig


def limit_malloc_arenas(arenas: int = 2) -> None:
    """Cap glibc's malloc arenas (``mallopt(M_ARENA_MAX)``), as ``MALLOC_ARENA_MAX`` would.

    The web server runs requests on many threads; glibc gives each its own arena, and freed
    tensors fragment them, so the server's RSS creeps up over generations although no object
    leaks. No-op where glibc's ``mallopt`` is missing, or when ``MALLOC_ARENA_MAX`` is already set.
    """
    import ctypes
    import os

    if os.environ.get("MALLOC_ARENA_MAX"):
        return
    try:
        ctypes.CDLL("libc.so.6").mallopt(-8, int(arenas))  # -8 = M_ARENA_MAX
    except (OSError, AttributeError):
        pass


def build_app(config: AppConfig | None = None) -> ExplorerApp:
    """FastAPI app = viser proxy under ``/viser/<token>/`` + the Gradio page at ``/`` (one port)."""
    limit_malloc_arenas()
    keep_freed_memory()  # frames reuse freed pages; release_memory() trims after each generation
    warm_up()  # the merge kernels compile (or load) before the first Generate
    config = config or AppConfig()
    sessions = SessionManager(config)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sessions.start_reaper()
        try:
            yield
        finally:
            sessions.shutdown()

    app = FastAPI(lifespan=lifespan)
    add_viser_proxy(app, sessions.port_for_token)
    demo = build_page(sessions, config)
    demo.queue(default_concurrency_limit=config.generation_concurrency, max_size=4 * config.max_sessions)
    app = gr.mount_gradio_app(
        app, demo, path="", allowed_paths=[str(config.temp_root)], max_file_size=f"{config.snapshot_upload_mb}mb",
        ssr_mode=False, server_name=config.host, server_port=config.port, footer_links=["api"], css=PAGE_CSS,
    )
    return ExplorerApp(app, demo, sessions, config)


def serve(config: AppConfig) -> None:
    """Run the app with uvicorn on ``config.host:config.port`` (blocks)."""
    built = build_app(config)
    print(f"WorldStereo Explorer on http://{config.host}:{config.port}")
    uvicorn.run(built.app, host=config.host, port=config.port, log_level="warning", ws="websockets-sansio")
