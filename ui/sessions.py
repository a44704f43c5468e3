"""Bounded, isolated sessions keyed by gradio's session hash, freed on page unload or after an idle timeout."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

from ui.config import AppConfig
from ui.explorer import Session


class SessionLimitError(RuntimeError):
    """All session slots are taken."""


_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class SessionManager:
    """Creates, finds and frees :class:`~ui.explorer.Session` objects.

    Each session gets its own temp dir ``<temp_root>/<session id>`` and (on first use) its own viser server;
    nothing is shared between sessions. At most ``config.max_sessions`` live at once.
    """

    def __init__(self, config: AppConfig) -> None:
        self.config = config
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper: threading.Thread | None = None
        config.temp_root.mkdir(parents=True, exist_ok=True)

    def get(self, session_hash: str | None) -> Session:
        """The session of ``session_hash`` (created on first use). Raises SessionLimitError when full."""
        if not session_hash:
            raise ValueError("request has no session id (is the queue enabled?)")
        with self._lock:
            s = self._sessions.get(session_hash)
            if s is None:
                if len(self._sessions) >= self.config.max_sessions:
                    raise SessionLimitError(
                        f"the server is full ({self.config.max_sessions} sessions); try again in a few minutes"
                    )
                d = self.config.temp_root / _SAFE.sub("_", session_hash)[:64]
                d.mkdir(parents=True, exist_ok=True)
                s = Session(session_hash, Path(d), self.config)
                self._sessions[session_hash] = s
        s.touch()
        return s

    def peek(self, session_hash: str) -> Session | None:
        with self._lock:
            return self._sessions.get(session_hash)

    def port_for_token(self, token: str) -> int | None:
        """Internal viser port of the session whose viewer token is ``token`` (None: unknown)."""
        with self._lock:
            for s in self._sessions.values():
                if s.token == token:
                    s.touch()
                    return s.viewer_port
        return None

    def close(self, session_hash: str) -> bool:
        with self._lock:
            s = self._sessions.pop(session_hash, None)
        if s is None:
            return False
        s.close()
        return True

    def reap(self, now: float | None = None) -> list[str]:
        """Close sessions idle longer than the timeout (a generating session is never idle)."""
        now = time.monotonic() if now is None else now
        with self._lock:
            idle = [k for k, s in self._sessions.items()
                    if not s.busy and now - s.last_seen > self.config.session_idle_timeout_s]
        for k in idle:
            self.close(k)
        return idle

    def __len__(self) -> int:
        with self._lock:
            return len(self._sessions)

    def start_reaper(self) -> None:
        if self._reaper is not None:
            return

        def loop() -> None:
            while not self._stop.wait(self.config.reaper_interval_s):
                self.reap()

        self._reaper = threading.Thread(target=loop, daemon=True, name="session-reaper")
        self._reaper.start()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            keys = list(self._sessions)
        for k in keys:
            self.close(k)
