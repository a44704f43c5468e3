"""Reverse proxy of per-session viser servers under one path of the main app.

Each session's viser server listens on ``127.0.0.1:<internal port>``; the browser reaches it only through
the public app at ``<prefix>/<token>/`` (HTTP: the client page) and ``<prefix>/<token>`` (websocket: the
viser client connects to its page URL with ``http`` replaced by ``ws`` and the trailing slash removed).
All links are relative, so the same page works behind an HTTPS proxy (a Hugging Face Space): the browser
then speaks ``wss://`` to the public host and the proxy speaks plain ``ws://`` on the loopback.

``token`` is a random per-session id (not gradio's session hash); unknown tokens get a 404.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import httpx
import websockets
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import RedirectResponse, Response

PortLookup = Callable[[str], "int | None"]
"""token -> internal port of that session's viser server (None: unknown token)."""

# Response headers that must not be copied through a proxy (hop-by-hop or recomputed).
_DROP_HEADERS = {"content-length", "transfer-encoding", "connection", "keep-alive", "content-encoding"}


def add_viser_proxy(app: FastAPI, lookup: PortLookup, prefix: str = "/viser") -> None:
    """Register the HTTP and websocket proxy routes on ``app`` (before gradio is mounted at ``/``)."""

    @app.get(prefix + "/{token}")
    async def _viser_root_redirect(token: str) -> Response:
        if lookup(token) is None:
            return Response("unknown viewer session", status_code=404)
        return RedirectResponse(f"{token}/", status_code=307)  # relative: keeps any outer prefix

    @app.get(prefix + "/{token}/{path:path}")
    async def _viser_http(token: str, path: str, request: Request) -> Response:
        port = lookup(token)
        if port is None:
            return Response("unknown viewer session", status_code=404)
        url = f"http://127.0.0.1:{port}/{path}"
        try:
            async with httpx.AsyncClient(timeout=30.0) as client:
                upstream = await client.get(url, params=dict(request.query_params), headers={"accept-encoding": "identity"})
        except httpx.HTTPError as exc:
            return Response(f"viewer unavailable: {exc}", status_code=502)
        headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _DROP_HEADERS}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    async def _viser_ws(websocket: WebSocket, token: str) -> None:
        port = lookup(token)
        if port is None:
            await websocket.close(code=4404)
            return
        protocols = [p.strip() for p in websocket.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        try:
            upstream = await websockets.connect(
                f"ws://127.0.0.1:{port}", subprotocols=protocols or None, max_size=None, open_timeout=10
            )
        except (OSError, websockets.WebSocketException, asyncio.TimeoutError):
            await websocket.close(code=1011)
            return
        await websocket.accept(subprotocol=upstream.subprotocol)

        async def browser_to_viser() -> None:
            while True:
                try:
                    msg = await websocket.receive()
                except (WebSocketDisconnect, RuntimeError):
                    return
                if msg["type"] == "websocket.disconnect":
                    return
                if msg.get("bytes") is not None:
                    await upstream.send(msg["bytes"])
                elif msg.get("text") is not None:
                    await upstream.send(msg["text"])

        async def viser_to_browser() -> None:
            try:
                async for data in upstream:
                    if isinstance(data, bytes):
                        await websocket.send_bytes(data)
                    else:
                        await websocket.send_text(data)
            except (WebSocketDisconnect, RuntimeError, websockets.WebSocketException, OSError):
                return  # the browser went away (or viser did): end quietly

        tasks = [asyncio.create_task(browser_to_viser()), asyncio.create_task(viser_to_browser())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, websockets.WebSocketException, RuntimeError):
                    await t
            # a closed tab is a normal end: closing either side again must not raise (nor log a traceback)
            with contextlib.suppress(OSError, websockets.WebSocketException, RuntimeError):
                await upstream.close()
            with contextlib.suppress(RuntimeError, WebSocketDisconnect, OSError):
                await websocket.close()

    app.add_api_websocket_route(prefix + "/{token}", _viser_ws)
    app.add_api_websocket_route(prefix + "/{token}/", _viser_ws)
