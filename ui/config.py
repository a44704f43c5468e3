"""App configuration: one dataclass, filled from command-line arguments and environment variables."""

from __future__ import annotations

import argparse
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

WORKING_SIZES: dict[str, tuple[int, int]] = {
    "256x192": (256, 192),
    "384x288": (384, 288),
    "512x384": (512, 384),
}
"""Working sizes offered in the page (multiples of the 16-pixel SSM patch)."""
KEYFRAMES_PER_MEMORY = 32
"""The SSM of a session holds this many keyframes' tokens (``memory_size = 32 x tokens per frame``)."""
PANORAMA_VIEWS = 29
"""Views a panorama start stores as keyframes (the 27-view bank and the poles)."""


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"environment variable {name} must be positive, got {value}")
    return value


@dataclass
class AppConfig:
    """Everything that configures the explorer app."""

    host: str = "127.0.0.1"
    """Interface to bind; 0.0.0.0 only when asked (``--host``, ``GRADIO_SERVER_NAME``) or on a Space (``SPACE_ID``)."""
    port: int = 7860
    """Port of the one public server (``--port``, ``GRADIO_SERVER_PORT``)."""
    max_sessions: int = 8
    """Concurrent browser sessions (``WORLDSTEREO_MAX_SESSIONS``); each holds a model and a viser server."""
    generation_concurrency: int = 2
    """Generations running at once (``WORLDSTEREO_GENERATION_CONCURRENCY``); the rest wait in the queue."""
    session_idle_timeout_s: float = 1800.0
    """A session unused this long is freed by the reaper (``WORLDSTEREO_SESSION_TIMEOUT``), even without an unload."""
    reaper_interval_s: float = 30.0
    """How often the reaper looks for idle sessions."""
    max_upload_mb: int = 25
    """Largest accepted upload in MB (images, depth maps, camera files); snapshots: :attr:`snapshot_upload_mb`."""
    max_view_points: int = 300_000
    """Points the viewport shows at most (a random subset; the memory keeps all of them)."""
    max_view_splats: int = 100_000
    """Splats the viewport shows at most in its Splats mode (neighbours merged into larger discs beyond it). viser's
    WebGL splat renderer drops a splat whose screen footprint is under about half a pixel (opacity x det of its
    screen covariance < 0.25): a 170K-splat memory seen from one scene depth behind its start lost 32% of its
    splats so; merged to 100K (70K discs), 2%."""
    max_frames: int = 49
    """Most frames one path may have."""
    default_size: str = "384x288"
    """Default working size (a key of ``WORKING_SIZES``)."""
    temp_root: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "worldstereo-explorer")
    """Per-session temp dirs live under this folder (``WORLDSTEREO_TEMP_DIR``)."""

    def __post_init__(self) -> None:
        if not 0 < int(self.port) < 65536:
            raise ValueError(f"port must be in 1..65535, got {self.port}")
        if self.default_size not in WORKING_SIZES:
            raise ValueError(f"default_size must be one of {sorted(WORKING_SIZES)}, got {self.default_size!r}")
        for name in ("max_sessions", "generation_concurrency", "max_upload_mb", "max_view_points", "max_view_splats",
                     "max_frames"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        self.temp_root = Path(self.temp_root)

    @property
    def snapshot_upload_mb(self) -> int:
        """Largest accepted memory snapshot in MB: the most the app can write (``worldstereo.snapshot.
        snapshot_bytes_bound`` at the largest working size, a panorama's enlarged SSM and all its keyframes, the
        GGM full), so that every snapshot from the Downloads loads again."""
        import math

        from worldstereo.config import WorldStereoConfig
        from worldstereo.snapshot import snapshot_bytes_bound

        w, h = max(WORKING_SIZES.values())
        tokens = (w // 16) * (h // 16)
        keyframes = PANORAMA_VIEWS + 2 * WorldStereoConfig.keyframes_per_clip  # what a panorama start enlarges it to
        config = WorldStereoConfig(width=w, height=h, memory_size=max(KEYFRAMES_PER_MEMORY, keyframes) * tokens)
        bound = snapshot_bytes_bound(config, max(KEYFRAMES_PER_MEMORY, keyframes), path_frames=self.max_frames)
        return max(self.max_upload_mb, math.ceil(bound / 2**20))

    @classmethod
    def from_args(cls, argv: list[str] | None = None) -> AppConfig:
        """Parse ``--host/--port/--max-sessions`` over the environment (arguments win)."""
        env_host = os.environ.get("GRADIO_SERVER_NAME") or ("0.0.0.0" if os.environ.get("SPACE_ID") else "127.0.0.1")
        parser = argparse.ArgumentParser(description="WorldStereo Explorer: camera-guided, memory-consistent exploration")
        parser.add_argument("--host", default=env_host, help="interface to bind (default 127.0.0.1; 0.0.0.0 on a Space)")
        parser.add_argument("--port", type=int, default=_env_int("GRADIO_SERVER_PORT", 7860), help="port (default 7860)")
        parser.add_argument("--max-sessions", type=int, default=_env_int("WORLDSTEREO_MAX_SESSIONS", 8))
        parser.add_argument(
            "--generation-concurrency", type=int, default=_env_int("WORLDSTEREO_GENERATION_CONCURRENCY", 2)
        )
        parser.add_argument("--session-timeout", type=float, default=float(_env_int("WORLDSTEREO_SESSION_TIMEOUT", 1800)))
        args = parser.parse_args(argv)
        temp = os.environ.get("WORLDSTEREO_TEMP_DIR")
        kwargs = {"temp_root": Path(temp)} if temp else {}
        return cls(
            host=args.host,
            port=args.port,
            max_sessions=args.max_sessions,
            generation_concurrency=args.generation_concurrency,
            session_idle_timeout_s=args.session_timeout,
            **kwargs,
        )
