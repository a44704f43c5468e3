"""Start the explorer app in-process (uvicorn in a thread, free port) for the app and browser tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import uvicorn

from ui.config import AppConfig
from ui.server import ExplorerApp, build_app


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_app(temp_root: Path, **config_kwargs) -> Iterator[tuple[str, ExplorerApp]]:
    """Yield (base URL, the app) while a uvicorn server runs it on 127.0.0.1:<free port>."""
    port = free_port()
    cfg = AppConfig(port=port, temp_root=temp_root, default_size="256x192", **config_kwargs)
    built = build_app(cfg)
    server = uvicorn.Server(uvicorn.Config(built.app, host="127.0.0.1", port=port, log_level="warning",
                                           ws="websockets-sansio", timeout_graceful_shutdown=2))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("app did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}/", built
    finally:
        server.should_exit = True
        thread.join(timeout=20)
