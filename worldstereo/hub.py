"""Model weights from the Hugging Face Hub: local cache first, one verified download per process.

Every learned part (MoGe-2 depth, later LaMa and Wan2.1-VACE) gets its files through
:func:`fetch_file`, the way Hugging Face projects do (``huggingface_hub.hf_hub_download``):

1. a copy already in the Hub cache is used without any network request;
2. otherwise the file is downloaded (progress bar, or a ``progress`` callback), unless the Hub is
   switched off (``HF_HUB_OFFLINE=1``);
3. the downloaded file is checked (its SHA-256 against the Hub's LFS ETag, then a caller's
   ``validate``); a file that fails is deleted from the cache, so a corrupt or truncated copy
   never breaks the next start.

The environment is read at call time, not at import time: ``HF_ENDPOINT`` (the Hub's address;
tests point it at a local fake Hub), ``HF_HOME`` / ``HF_HUB_CACHE`` (the cache), ``HF_HUB_OFFLINE``,
and ``HF_TOKEN`` (read by ``huggingface_hub`` itself). Concurrent callers of the same file in one
process wait for a single download (a lock per file); ``huggingface_hub``'s own file locks guard
against other processes.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

__all__ = [
    "DEFAULT_ENDPOINT",
    "check_zip_archive",
    "discard_cached",
    "WeightsUnavailableError",
    "cached_file",
    "fetch_file",
    "forget_failures",
    "hub_cache_dir",
    "hub_endpoint",
    "hub_offline",
    "hub_unreachable",
]

DEFAULT_ENDPOINT = "https://huggingface.co"
#: seconds to wait for the Hub's answer about a file before giving up (downloads themselves may take longer)
METADATA_TIMEOUT_S = 10.0
_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: progress callback: (bytes done, bytes total or None)
ProgressCallback = Callable[[int, "int | None"], None]


class WeightsUnavailableError(RuntimeError):
    """Weights cannot be had here. ``reason`` is one of ``offline``, ``download_failed``, ``corrupt``,
    ``not_found`` or ``package_missing``; the message says why and how to fix it, in one line."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def hub_endpoint() -> str:
    """The Hub address: ``HF_ENDPOINT`` or https://huggingface.co (read now, not at import)."""
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def hub_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` (or ``TRANSFORMERS_OFFLINE``) switches the Hub off."""
    return _env_true("HF_HUB_OFFLINE") or _env_true("TRANSFORMERS_OFFLINE")


def hub_cache_dir() -> Path:
    """The Hub cache: ``HF_HUB_CACHE``, else ``$HF_HOME/hub``, else ``~/.cache/huggingface/hub``."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.path.expandvars(os.environ["HF_HUB_CACHE"])).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    """The cached copy of ``repo_id/filename`` (no network request), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=hub_cache_dir(), revision=revision, repo_type="model")
    if isinstance(found, str) and Path(found).is_file():
        return Path(found)
    return None


#: seconds a failed download is remembered: callers within it get the same error at once instead of
#: waiting for the network again (each new session of the app would otherwise wait for the time-out)
FAILURE_MEMORY_S = 60.0

#: seconds to wait for the Hub's host name to resolve, then as long again for a TCP connection, in
#: :func:`hub_unreachable` (a machine without a reachable name server otherwise waits for the resolver's own
#: time-outs, 10 s and more, before every offline start)
PROBE_TIMEOUT_S = 3.0
_PROXY_VARS = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")

_locks: dict[tuple[str, str, str | None], threading.Lock] = {}
_unreachable: dict[str, tuple[float, str]] = {}
_probe_lock = threading.Lock()
_failures: dict[tuple[str, str, str | None], tuple[float, WeightsUnavailableError]] = {}
_locks_guard = threading.Lock()
_verified: set[Path] = set()


def _file_lock(key: tuple[str, str, str | None]) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def _progress_tqdm(progress: ProgressCallback):
    """A tqdm class that reports to ``progress`` (and prints nothing)."""
    from tqdm.auto import tqdm

    class _Reporter(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = False
            kwargs["file"] = open(os.devnull, "w")  # noqa: SIM115 - closed in close()
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            out = super().update(n)
            progress(int(self.n), int(self.total) if self.total else None)
            return out

        def close(self):
            fp = self.fp
            super().close()
            if fp is not None and not fp.closed:
                fp.close()

    return _Reporter


def _silent_tqdm():
    """A tqdm class that shows nothing."""
    from tqdm.auto import tqdm

    class _Silent(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return _Silent


def check_zip_archive(path: Path) -> None:
    """Raise ``ValueError`` unless ``path`` is a whole zip archive (every member's CRC checked).

    ``torch.save`` files are zip archives, so this catches truncated and corrupted checkpoints
    without unpickling anything.
    """
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            bad = zf.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise ValueError(f"not a whole zip archive: {err}") from err
    if bad is not None:
        raise ValueError(f"member {bad!r} fails its CRC check")


def discard_cached(path: Path) -> None:
    """Remove a file that :func:`fetch_file` returned (e.g. one its loader found unusable) from the cache."""
    _remove_cached(Path(path))


def _remove_cached(path: Path) -> None:
    """Delete a cached file: the snapshot link and the blob it points to."""
    blob = path.resolve()
    for p in (path, blob):
        try:
            p.unlink()
        except FileNotFoundError:
            pass
    _verified.discard(path)


def _check_sha256(path: Path) -> None:
    """Compare the file's SHA-256 with the Hub's LFS ETag (the blob's name), where the ETag is one."""
    blob = path.resolve()
    if not _SHA256.match(blob.name):
        return  # a small git file: the ETag is a git hash, not a content hash
    digest = hashlib.sha256()
    with open(blob, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            digest.update(chunk)
    if digest.hexdigest() != blob.name:
        raise ValueError("its SHA-256 does not match the Hub's")


def fetch_file(
    repo_id: str,
    filename: str,
    *,
    revision: str | None = None,
    validate: Callable[[Path], None] | None = None,
    progress: ProgressCallback | None = None,
    show_progress: bool = True,
    download: bool = True,
) -> Path:
    """A local path of ``filename`` in the Hub repository ``repo_id``: from the cache, else downloaded.

    Args:
        repo_id: ``owner/name`` of a model repository.
        filename: file inside it.
        revision: branch, tag or commit (default: the main branch).
        validate: called with the path of a newly downloaded file (and once per process for a cached
            one); raises ``ValueError`` when the file is unusable, which deletes it.
        progress: called with (bytes done, bytes total) while downloading.
        show_progress: a progress bar on stderr while downloading (ignored with ``progress``).
        download: False = the cache only (no network request).
    Returns:
        path of the file in the Hub cache.
    Raises:
        WeightsUnavailableError: not cached and offline, the download failed, or the file is corrupt
            (then it is no longer in the cache).
    """
    with _file_lock((repo_id, filename, revision)):
        found = cached_file(repo_id, filename, revision)
        if found is not None:
            if found not in _verified:
                _validate(found, repo_id, filename, validate, cached=True)
            return found
        if not download:
            raise WeightsUnavailableError(f"{repo_id}/{filename} is not in the Hub cache ({hub_cache_dir()})", "not_found")
        failed = _failures.get((repo_id, filename, revision))
        if failed is not None and time.monotonic() - failed[0] < FAILURE_MEMORY_S:
            raise failed[1]
        if hub_offline():
            raise WeightsUnavailableError(
                f"{repo_id}/{filename} is not in the Hub cache and the Hub is switched off (HF_HUB_OFFLINE=1); "
                "run `worldstereo download-weights` where the Hub can be reached, or unset HF_HUB_OFFLINE",
                "offline",
            )
        try:
            unreachable = hub_unreachable()
            if unreachable is not None:
                raise WeightsUnavailableError(
                    f"could not download {repo_id}/{filename} from {hub_endpoint()}: {unreachable}; check the "
                    "connection (or HF_ENDPOINT), or fetch the weights elsewhere with `worldstereo download-weights`",
                    "download_failed",
                )
            path = _download(repo_id, filename, revision, progress, show_progress)
        except WeightsUnavailableError as err:
            _failures[(repo_id, filename, revision)] = (time.monotonic(), err)
            raise
        _failures.pop((repo_id, filename, revision), None)
        _validate(path, repo_id, filename, validate, cached=False)
        return path


def forget_failures() -> None:
    """Forget remembered download failures and unreachable Hubs (the next call tries the network again)."""
    _failures.clear()
    _unreachable.clear()


def hub_unreachable(endpoint: str | None = None) -> str | None:
    """Why the Hub at ``endpoint`` (default :func:`hub_endpoint`) cannot be reached, or None when it can.

    One name lookup and one TCP connection to its host, each at most ``PROBE_TIMEOUT_S`` seconds (one probe at a
    time; callers during one wait for its answer); a failure is remembered for
    ``FAILURE_MEMORY_S``. Without it, ``huggingface_hub`` retries a request whose host does not resolve
    five times with back-off (23 s per file), so a machine without the Hub would wait 47 s for its first
    scene before the offline fallback. Behind an HTTP(S) proxy the probe is skipped (None): only the
    proxy knows.
    """
    endpoint = (endpoint or hub_endpoint()).rstrip("/")
    if any(os.environ.get(v) for v in _PROXY_VARS):
        return None
    with _probe_lock:  # one probe at a time: a caller arriving during one (the start's background probe) gets its answer
        known = _unreachable.get(endpoint)
        if known is not None and time.monotonic() - known[0] < FAILURE_MEMORY_S:
            return known[1]
        return _probe(endpoint)


def probe_in_background() -> threading.Thread | None:
    """Start :func:`hub_unreachable` in a daemon thread (entry points, while they import and read inputs), so
    the first weights lookup finds the answer ready; None when the Hub is switched off."""
    if hub_offline():
        return None
    thread = threading.Thread(target=hub_unreachable, name="worldstereo-hub-probe", daemon=True)
    thread.start()
    return thread


def _probe(endpoint: str) -> str | None:
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as err:
        return f"HF_ENDPOINT {endpoint!r} is not a valid address ({err})"
    if not parts.hostname:
        return f"HF_ENDPOINT {endpoint!r} names no host"
    try:
        address = _resolve(parts.hostname, port, PROBE_TIMEOUT_S)
        with socket.create_connection(address, timeout=PROBE_TIMEOUT_S):
            pass
    except OSError as err:
        reason = f"{parts.hostname}:{port} cannot be reached ({_one_line(err)})"
        _unreachable[endpoint] = (time.monotonic(), reason)
        return reason
    _unreachable.pop(endpoint, None)
    return None


def _resolve(host: str, port: int, timeout: float) -> tuple[str, int]:
    """``(address, port)`` of ``host``, or ``OSError`` when the name does not resolve within ``timeout`` seconds.

    ``getaddrinfo`` takes no time-out (the socket's does not apply to it); it runs in a daemon thread
    that is left to finish on its own when it is too slow.
    """
    found: list = []

    def lookup() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][:2])
        except OSError as err:
            found.append(err)

    worker = threading.Thread(target=lookup, name="worldstereo-hub-dns", daemon=True)
    worker.start()
    worker.join(timeout)
    if not found:
        raise OSError(f"the name {host} did not resolve within {timeout:g} s")
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


def _download(
    repo_id: str, filename: str, revision: str | None, progress: ProgressCallback | None, show_progress: bool
) -> Path:
    try:
        from huggingface_hub import hf_hub_download
    except ImportError as err:  # pragma: no cover - a dependency of this package
        raise WeightsUnavailableError(f"huggingface_hub is not installed ({err})", "package_missing") from err
    tqdm_class = None
    if progress is not None:
        tqdm_class = _progress_tqdm(progress)
    elif not show_progress:
        tqdm_class = _silent_tqdm()
    endpoint = hub_endpoint()
    from huggingface_hub import constants

    # huggingface_hub reads HF_HUB_OFFLINE once, at import; this module reads it at call time and
    # has just found it off, so the library must not refuse the request on a stale value.
    constants.HF_HUB_OFFLINE = False
    try:
        return Path(
            hf_hub_download(
                repo_id,
                filename,
                revision=revision,
                cache_dir=hub_cache_dir(),
                endpoint=endpoint,
                etag_timeout=METADATA_TIMEOUT_S,
                tqdm_class=tqdm_class,
            )
        )
    except Exception as err:  # network errors, HTTP errors, size mismatches: all mean "not downloaded"
        detail = _one_line(err)
        raise WeightsUnavailableError(
            f"could not download {repo_id}/{filename} from {endpoint} ({detail}); check the connection "
            "(or HF_ENDPOINT / HF_TOKEN), or fetch the weights elsewhere with `worldstereo download-weights`",
            "download_failed",
        ) from err


def _validate(path: Path, repo_id: str, filename: str, validate: Callable[[Path], None] | None, cached: bool) -> None:
    try:
        if not cached:
            _check_sha256(path)
        if validate is not None:
            validate(path)
    except ValueError as err:
        _remove_cached(path)
        where = "cached copy" if cached else "downloaded file"
        raise WeightsUnavailableError(
            f"the {where} of {repo_id}/{filename} is corrupt ({_one_line(err)}) and was removed from the cache; "
            "the next start downloads it again",
            "corrupt",
        ) from err
    _verified.add(path)


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 240 else text[:237] + "..."
