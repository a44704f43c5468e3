"""Starting or joining Ray, and what a task asks of it; light (no torch), so that a batch's driver, which only
schedules tasks, starts at once.

* :func:`connect`: ``ray.init`` once per process: embedded (this machine's CPUs and GPUs, capped by ``workers``;
  no dashboard, nothing logged to the driver) or joining ``address`` (``auto`` or ``ray://HOST:10001``).
* :func:`task_threads`: the CPUs Ray gave the running task (its thread budget).
* :func:`gpu_options`: one GPU per task where the cluster has GPUs.

Ray is imported only when these are called.
"""

from __future__ import annotations

from typing import Any

from worldstereo.threads import available_cores

__all__ = ["MAX_RETRIES", "connect", "gpu_options", "started_here", "task_threads"]

#: retries of a task whose worker died (a killed process, a lost node)
MAX_RETRIES = 3

_started_here = False


def connect(address: str | None = None, workers: int | None = None) -> Any:
    """Start (or join) Ray once per process and return the ``ray`` module.

    Args:
        address: None = embedded on this machine; ``auto`` or ``ray://HOST:10001`` = join that cluster.
        workers: most tasks at once on an embedded Ray (its CPUs); None = every core this process may use.
    """
    global _started_here
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or available_cores(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
            _started_here = True
    return ray


def started_here() -> bool:
    """Whether :func:`connect` started the Ray this process is connected to (embedded; not a cluster it joined,
    nor one a caller started)."""
    import ray

    return _started_here and ray.is_initialized()


def task_threads() -> int:
    """CPUs Ray assigned to the running task (its thread budget; 1 outside a task or without a CPU count)."""
    import ray

    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:  # noqa: BLE001 - not inside a task
        cpus = 1
    return max(1, int(round(cpus)))


def gpu_options(ray: Any | None = None) -> dict[str, Any]:
    """Task options: one GPU per task where the cluster (``ray``, connected) has GPUs, else none; without ``ray``,
    where torch sees CUDA here."""
    if ray is not None:
        return {"num_gpus": 1} if ray.cluster_resources().get("GPU", 0) >= 1 else {}
    import torch

    return {"num_gpus": 1} if torch.cuda.is_available() else {}
