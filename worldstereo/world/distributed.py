"""Ray for worlds and batches: embedded on this machine by default, a cluster when given an address.

* :func:`connect`: ``ray.init`` once per process: embedded (this machine's CPUs and GPUs, capped by
  ``workers``) or joining ``address`` (``auto`` or ``ray://HOST:10001``).
* :func:`ray_executor`: a world's round as Ray tasks, one per trajectory. The round's starting
  memories go into the object store once; each task rebuilds the memories from them, generates its
  trajectory and returns the frames' observations; the driver folds them in plan order, so the world
  is the same for any number of workers.

Ray is imported only when used.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

import torch

from worldstereo.camera import CameraParameters
from worldstereo.config import WorldStereoConfig
from worldstereo.context import ContextState, GenerationContext
from worldstereo.pipeline import Step
from worldstereo.threads import available_cores
from worldstereo.world.rounds import Generated, RoundBase, generate_from

__all__ = ["RoundPayload", "connect", "gpu_options", "ray_executor", "task_threads"]

#: retries of a task whose worker died (a killed process, a lost node)
MAX_RETRIES = 3


def connect(address: str | None = None, workers: int | None = None) -> Any:
    """Start (or join) Ray once per process and return the ``ray`` module.

    Args:
        address: None = embedded on this machine; ``auto`` or ``ray://HOST:10001`` = join that cluster.
        workers: most tasks at once on an embedded Ray (its CPUs); None = every core this process may use.
    """
    import ray

    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers or available_cores(), include_dashboard=False, log_to_driver=False,
                     configure_logging=False)
    return ray


def task_threads() -> int:
    """CPUs Ray assigned to the running task (its thread budget; 1 outside a task or without a CPU count)."""
    import ray

    try:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    except Exception:  # noqa: BLE001 - not inside a task
        cpus = 1
    return max(1, int(round(cpus)))


def _on_host(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.cpu() if isinstance(v, torch.Tensor) else v for k, v in state.items()}


def gpu_options() -> dict[str, Any]:
    """Task options: one GPU per task where CUDA is present, else none."""
    return {"num_gpus": 1} if torch.cuda.is_available() else {}


@dataclass
class RoundPayload:
    """What a trajectory task needs of the round: the config, the starting memories and the start view."""

    config: WorldStereoConfig
    state: ContextState
    num_points: int
    evictions: int
    start_camera: CameraParameters
    start_image: torch.Tensor
    scene_depth: float
    merge_threshold: float


def _trajectory_task(payload: RoundPayload, cameras: CameraParameters, seed: int) -> Generated:
    """One trajectory from the round's starting memories (runs in a Ray worker)."""
    from worldstereo.backends.factory import make_generator
    from worldstereo.threads import configure_process

    configure_process(task_threads())  # the task's CPUs, not the node's cores
    torch.manual_seed(seed)
    ctx = GenerationContext(payload.config)
    ctx.start_camera, ctx.start_image = payload.start_camera, payload.start_image
    ctx.scene_depth, ctx.merge_threshold = payload.scene_depth, payload.merge_threshold
    generator = make_generator(payload.config).generator
    base = RoundBase(payload.state, payload.num_points, payload.evictions)
    return generate_from(ctx, generator, base, cameras)


def ray_executor(ray: Any, workers: int | None = None, seed: int = 0) -> Callable[..., Iterator[Generated]]:
    """A world executor (see :func:`worldstereo.world.runner.build_world`) that runs a round's trajectories as Ray tasks.

    At most ``workers`` run at once (None: as many as Ray schedules); a task whose worker dies is retried.
    """
    remote = ray.remote(max_retries=MAX_RETRIES)(_trajectory_task)

    def run(ctx: GenerationContext, generator: Any, base: RoundBase, jobs: list[tuple[str, CameraParameters]],
            on_step: Callable[[str, Step], None]) -> Iterator[Generated]:
        # the object store holds host tensors; each task loads them onto its own device
        # (without the inspection history: a task's frames come back as observations, and the driver records them)
        state = replace(base.state, ggm=_on_host(base.state.ggm), ssm=_on_host(base.state.ssm), history=None)
        payload = ray.put(RoundPayload(ctx.config, state, base.num_points, base.evictions, ctx.start_camera,
                                       ctx.start_image, ctx.scene_depth, ctx.merge_threshold))
        options = gpu_options()
        limit = workers or len(jobs)
        refs: list[Any] = [None] * len(jobs)
        submitted = 0

        def submit_until(n: int) -> None:
            nonlocal submitted
            while submitted < min(n, len(jobs)):
                _, cams = jobs[submitted]
                refs[submitted] = remote.options(**options).remote(payload, cams, seed)
                submitted += 1

        try:
            submit_until(limit)
            for i in range(len(jobs)):
                result = ray.get(refs[i])
                refs[i] = None
                submit_until(i + 1 + limit)
                yield result
        finally:
            for ref in refs:
                if ref is not None:
                    ray.cancel(ref, force=True)

    return run
