"""A local HTTP server posing as the Hugging Face Hub, for tests of the weight download path.

It answers what ``huggingface_hub.hf_hub_download`` asks (``HEAD`` / ``GET
/{repo_id}/resolve/{revision}/{filename}`` with ``X-Repo-Commit``, ``ETag`` = the file's SHA-256 as
for LFS files, ``Content-Length``) and the model info API (``/api/models/{repo_id}[/revision/{rev}]``).
It binds 127.0.0.1 only, counts requests, and can misbehave on purpose (``mode``): ``ok``,
``error500``, ``truncate`` (the file is cut to half its announced size), ``corrupt`` (flips bytes but keeps the ETag),
``slow`` (answers after ``delay`` seconds).

Usage::

    with FakeHub() as hub:
        hub.add("owner/name", "model.pt", data)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<file>.+)$")
_API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?:/revision/(?P<rev>[^/]+))?$")


class FakeHub:
    """See the module docstring. ``requests`` lists ``(method, path)`` of every request received."""

    def __init__(self) -> None:
        self.files: dict[tuple[str, str], bytes] = {}
        self.requests: list[tuple[str, str]] = []
        self.mode = "ok"
        self.delay = 0.0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def add(self, repo_id: str, filename: str, data: bytes) -> None:
        self.files[(repo_id, filename)] = bytes(data)

    def count(self, method: str | None = None, filename: str | None = None) -> int:
        with self._lock:
            return sum(
                1 for m, p in self.requests if (method is None or m == method) and (filename is None or p.endswith("/" + filename))
            )

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the hub first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeHub:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                hub._serve(self, body=False)

            def do_GET(self) -> None:  # noqa: N802
                hub._serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeHub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ------------------------------------------------------------------ serving
    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        with self._lock:
            self.requests.append((h.command, h.path.split("?")[0]))
        if self.mode == "slow":
            time.sleep(self.delay)
        if self.mode == "error500":
            self._send(h, 500, b'{"error": "internal error"}', {"Content-Type": "application/json"}, body)
            return
        path = h.path.split("?")[0]
        m = _API.match(path)
        if m:
            repo = m.group("repo")
            siblings = [{"rfilename": f} for (r, f) in self.files if r == repo]
            if not siblings:
                self._send(h, 404, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"}, body)
                return
            info = {"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings, "private": False}
            self._send(h, 200, json.dumps(info).encode(), {"Content-Type": "application/json"}, body)
            return
        m = _RESOLVE.match(path)
        key = (m.group("repo"), m.group("file")) if m else None
        if key is None or key not in self.files:
            self._send(h, 404, b"Entry not found", {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT}, body)
            return
        data = self.files[key]
        etag = hashlib.sha256(data).hexdigest()
        headers = {"X-Repo-Commit": COMMIT, "ETag": f'"{etag}"', "Content-Type": "application/octet-stream"}
        if self.mode == "corrupt":
            data = bytes(b ^ 0x5A for b in data)
        if self.mode == "truncate" and body:
            data = data[: len(data) // 2]  # the metadata (HEAD) still announces the whole size
        self._send(h, 200, data, headers, body)

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str], body: bool) -> None:
        h.send_response(status)
        for k, v in headers.items():
            h.send_header(k, v)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if body:
            h.wfile.write(data)


def point_at(server: FakeHub, monkeypatch, hf_home) -> None:
    """Make ``huggingface_hub`` (through ``worldstereo.hub``) use ``server`` with a fresh cache in ``hf_home``,
    the Hub switched on and no remembered download failure (undone by ``monkeypatch``; call
    ``worldstereo.hub.forget_failures()`` again after the test)."""
    from worldstereo import hub

    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(hf_home))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    hub.forget_failures()
