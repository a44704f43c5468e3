"""Process-wide settings of the entry points (CLI, app, benchmarks, tests); never applied on import.

glibc serves every allocation above its mmap threshold (at most 32 MB, adjusted on the fly) with a
fresh ``mmap`` and unmaps it on free, and trims freed memory at the top of its heap. A generation
allocates full-size temporaries every frame (the SSM's dense attention weights are 75 MB at
512x384), so each frame's buffers were new pages: the kernel faulted and zero-filled them again,
which showed as system time (a 21-frame clip: 950K page faults, 2.4 s sys for 17 s user).
:func:`keep_freed_memory` raises both thresholds so freed blocks are reused by the next frame: 200K
faults, 0.7 s sys, same peak RSS. The app still hands memory back after each generation
(``malloc_trim``, ``ui.session_records.release_memory``).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import os
import threading

__all__ = ["keep_freed_memory", "warm_up"]

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: blocks below this come from the heap and are reused after free (not mapped and unmapped each time)
MMAP_THRESHOLD = 1 << 30
#: freed memory at the heap's top is returned to the OS only past this much
TRIM_THRESHOLD = (1 << 31) - 1

_done = False


def keep_freed_memory() -> bool:
    """Make glibc keep and reuse freed large blocks (see the module docstring). Idempotent.

    Returns:
        True when applied; False where glibc's ``mallopt`` is missing (other C libraries, macOS,
        Windows) or when the user's ``MALLOC_MMAP_THRESHOLD_`` / ``GLIBC_TUNABLES`` already decide.
    """
    global _done
    if _done:
        return True
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") or "malloc" in os.environ.get("GLIBC_TUNABLES", ""):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    return _done


def release_freed_memory() -> bool:
    """Collect garbage and give the heap's free pages back to the system (glibc's ``malloc_trim``): what a
    long-lived worker calls between tasks, so that an idle one holds what it keeps, not its last task's peak.
    Returns False where ``malloc_trim`` is missing."""
    import gc

    gc.collect()
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    trim(0)
    return True


#: longest wait at exit for a warm-up still compiling (its first compile takes about 6 s)
WARM_UP_EXIT_WAIT_S = 30.0


def warm_up() -> threading.Thread:
    """Compile (or load from numba's cache) the GGM's merge kernels in a daemon thread; returns it.

    Entry points start it early, so that the first memory update does not wait for the compiler
    (about 6 s once per install, 0.4 s later); a failure is logged, and the first update then
    compiles in line as it would have.
    """

    def run() -> None:
        try:
            from worldstereo.memory.global_geometric import compile_merge_kernels

            compile_merge_kernels()
        except Exception:  # noqa: BLE001 - a warm-up must never take the entry point down
            log.warning("warming up the merge kernels failed; the first update compiles them", exc_info=True)

    thread = threading.Thread(target=run, name="worldstereo-warm-up", daemon=True)
    thread.start()
    # a daemon thread inside a compiled parallel kernel when the interpreter tears down aborts the
    # process ("terminate called without an active exception"): let it finish first (0.4 s from cache)
    atexit.register(thread.join, WARM_UP_EXIT_WAIT_S)
    return thread
