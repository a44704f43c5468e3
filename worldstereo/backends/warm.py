"""Models a long-lived worker keeps between its tasks.

A Ray worker runs many inputs of a batch, or many trajectories of a world, one after another; the depth
estimator (MoGe-2's weights), the hole filler (LaMa's ONNX session) and the frame generator (``vace``'s
pipeline) are the same for all of them, so it builds each once. A task body calls :func:`enable`; the
builders then go through :func:`warm`, which returns the model already built for the same key. Outside a
task (the CLI, the app) nothing is kept: :func:`warm` builds afresh each time.

Kept models are stateless between uses (the memories live in a ``GenerationContext``, made per task): an
estimator maps an image to depth, a filler fills holes, a generator starts every path with ``begin_clip``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

__all__ = ["built", "enable", "enabled", "reset", "warm"]

T = TypeVar("T")

_lock = threading.Lock()
_models: dict[Hashable, Any] = {}
_builds: dict[Hashable, int] = {}
_enabled = False


def enable() -> None:
    """Keep models in this process from now on (a long-lived worker's task body calls this)."""
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


def warm(key: Hashable, build: Callable[[], T]) -> T:
    """The model kept under ``key``, built by ``build()`` the first time (every time when keeping is off)."""
    if not _enabled:
        return build()
    with _lock:
        if key not in _models:
            _models[key] = build()
            _builds[key] = _builds.get(key, 0) + 1
        return _models[key]


def built() -> dict[Hashable, int]:
    """How many times each key was built in this process (1 each in a warm worker)."""
    with _lock:
        return dict(_builds)


def reset() -> None:
    """Forget every kept model and stop keeping (tests)."""
    global _enabled
    with _lock:
        _models.clear()
        _builds.clear()
    _enabled = False
