"""One thread policy for every CPU pool a generation uses: torch, numba, OpenCV, ONNX Runtime, BLAS, SciPy.

Each library sizes its own pool from the machine's core count by default. On a 16-core machine
pinned to 2 cores (``taskset``, a container's CPU quota) that gave 16 torch threads, 16 numba
threads, 16 OpenCV threads and an ONNX Runtime pool, all spinning on 2 cores: frames ran barely
faster than on 2 cores, at 2-3x the CPU time. Here one budget decides them all:

* :func:`available_cores`: the cores this process may run on (``os.sched_getaffinity``, capped by a
  cgroup v2 CPU quota where one is set);
* :func:`thread_budget`: ``WORLDSTEREO_THREADS`` when set (a positive integer), else the cores above;
* :func:`configure_process`: what entry points call first (the CLI, the app, a Ray worker): sets the
  pools' environment variables for libraries not imported yet (numba and OpenMP read them once, at
  import) and applies the budget to those already imported;
* :class:`ThreadPolicy`: divides the budget among concurrent generations (the app runs up to
  ``generation_concurrency`` of them): each holds ``budget // active`` threads while it runs;
* :func:`current_threads`: the share of the calling thread, for pools sized per call (a k-d tree
  query's ``workers``, an ONNX Runtime session's ``intra_op_num_threads``).

torch's and OpenCV's settings are process-wide; numba's and the OpenMP thread count are per thread
(each generation thread applies its own share when it starts).
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Iterator

__all__ = [
    "THREADS_ENV",
    "ThreadPolicy",
    "apply_threads",
    "available_cores",
    "configure_process",
    "current_threads",
    "shared_policy",
    "thread_budget",
]

#: environment variable that overrides the thread budget
THREADS_ENV = "WORLDSTEREO_THREADS"
#: pools sized from the environment when their library is first imported
_POOL_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "OPENCV_FOR_THREADS_NUM")

_local = threading.local()
_process_threads: int | None = None
_shared: ThreadPolicy | None = None
_shared_lock = threading.Lock()


def _cgroup_quota(path: str = "/sys/fs/cgroup/cpu.max") -> int | None:
    """Cores allowed by a cgroup v2 CPU quota (``cpu.max`` = "QUOTA PERIOD"), rounded up; None when unlimited."""
    try:
        with open(path, encoding="ascii") as fh:
            quota, period = fh.read().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    try:
        return max(1, -(-int(quota) // int(period)))
    except (ValueError, ZeroDivisionError):
        return None


def available_cores() -> int:
    """Cores this process may run on: its CPU affinity, capped by a cgroup CPU quota; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS, Windows
        cores = os.cpu_count() or 1
    quota = _cgroup_quota()
    return max(1, min(cores, quota) if quota else cores)


def thread_budget() -> int:
    """Threads a process spends on generation: ``WORLDSTEREO_THREADS`` when set, else :func:`available_cores`.

    Raises:
        ValueError: ``WORLDSTEREO_THREADS`` is set but not a positive integer.
    """
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        return available_cores()
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n <= 0:
        raise ValueError(f"{THREADS_ENV} must be a positive integer (threads), got {text!r}")
    return n


def apply_threads(n: int) -> int:
    """Size every pool the calling thread uses to ``n`` threads (torch, numba, OpenCV, BLAS); returns ``n``.

    Libraries not imported yet are left to :func:`configure_process`'s environment variables (this
    never imports one just to configure it).
    """
    n = max(1, int(n))
    _local.threads = n
    # numba first: launching its pool (an OpenMP layer) resets the calling thread's OpenMP thread
    # count, which is torch's; torch is set last, always
    numba = sys.modules.get("numba")
    if numba is not None:
        numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    cv2 = sys.modules.get("cv2")
    if cv2 is not None and hasattr(cv2, "setNumThreads"):
        cv2.setNumThreads(n)
    if "numpy" in sys.modules:
        with contextlib.suppress(Exception):  # threadpoolctl is optional (a scikit-learn dependency)
            from threadpoolctl import threadpool_limits

            threadpool_limits(n, user_api="blas")
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(n)
    return n


def configure_process(threads: int | None = None) -> int:
    """Apply the thread policy to this process (entry points call it first); returns the budget.

    Args:
        threads: the budget; None = :func:`thread_budget`.

    Sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``MKL_NUM_THREADS``, ``NUMBA_NUM_THREADS``
    and ``OPENCV_FOR_THREADS_NUM`` for libraries imported later, then :func:`apply_threads`.
    """
    global _process_threads
    n = thread_budget() if threads is None else max(1, int(threads))
    for name in _POOL_ENV:
        if name == "NUMBA_NUM_THREADS" and "numba" in sys.modules:
            continue  # numba's pool is already launched; changing the variable now makes it raise
        os.environ[name] = str(n)
    _process_threads = n
    return apply_threads(n)


def current_threads() -> int:
    """Threads the calling thread may use: its generation's share, else the process budget."""
    n = getattr(_local, "threads", None)
    if n is not None:
        return n
    return _process_threads if _process_threads is not None else thread_budget()


class ThreadPolicy:
    """Divides a thread budget among concurrent generations.

    Args:
        budget: threads for all generations together; None = :func:`thread_budget`.

    Each generation runs inside :meth:`generation`, which applies ``max(1, budget // active)`` threads
    to its thread (``active`` counts itself) and gives the share back when it ends. A generation
    already running keeps its share until it calls :meth:`refresh` (the app does once per frame), so
    two generations on 4 threads run with 2 each and the one left alone gets 4 again.
    """

    def __init__(self, budget: int | None = None) -> None:
        self.budget = thread_budget() if budget is None else max(1, int(budget))
        self._active = 0
        self._lock = threading.Lock()

    @property
    def active(self) -> int:
        """Generations running now."""
        return self._active

    def share(self) -> int:
        """Threads each running generation gets now (the whole budget when none runs)."""
        return max(1, self.budget // max(1, self._active))

    def refresh(self) -> int:
        """Re-apply the current share to the calling thread; returns it."""
        return apply_threads(self.share())

    @contextlib.contextmanager
    def generation(self) -> Iterator[int]:
        """Hold a share of the budget for one generation in the calling thread; yields the threads."""
        with self._lock:
            self._active += 1
        try:
            yield self.refresh()
        finally:
            with self._lock:
                self._active -= 1


def shared_policy() -> ThreadPolicy:
    """The process's :class:`ThreadPolicy` over the budget :func:`configure_process` set (the app's generations share it)."""
    global _shared
    with _shared_lock:
        budget = _process_threads if _process_threads is not None else thread_budget()
        if _shared is None or (_shared.budget != budget and _shared.active == 0):
            _shared = ThreadPolicy(budget)
        return _shared
